"""What a run is, as data every layer may read: the config's defaults and fields
(``config_base``) and the stage and explainer-variant registry with its run identities and
workdir file names (``stages``). It imports only ``utils`` and ``errors``."""
