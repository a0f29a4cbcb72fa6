"""xplain_jax: explain a CNN's predictions semantically and quantitatively
(Chen et al., ICCV 2019)."""

import setuptools

setuptools.setup(
    name="xplain_jax",
    version="0.1.0",
    description=(
        "Distil a trained CNN into an additive explainer over visual concepts, "
        "with Jacobian prior weights (Chen et al., ICCV 2019), in JAX/Flax."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["xplain_jax", "xplain_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "tensorflow-datasets>=4.9.7",
        "numpy>=1.26",
        "ml-collections>=0.1.1",
        "matplotlib>=3.7",
        "scipy>=1.10",
        "pillow>=10",
        "absl-py>=1.4",
        "tqdm>=4.60",
        # TensorBoard event files beside the JSON-lines logs, without TensorFlow.
        "tensorboardX>=2.6",
    ],
    extras_require={
        # torch builds torchvision-layout models in the weight-import parity tests;
        # tbparse reads the TensorBoard event files back; pyflakes finds undefined names;
        # pytest-xdist runs the suite on two workers (README's test command).
        # scikit-learn's bundled handwritten digits: the own-model example and its test.
        "test": ["pytest>=7", "pytest-xdist>=3", "torch>=2.0", "tbparse>=0.0.8", "pyflakes>=3",
                 "scikit-learn>=1.3"],
        "examples": ["scikit-learn>=1.3"],
        # tensorflow-cpu is only needed to *prepare* TFDS datasets (CelebA, Pascal-Part).
        "tfds": ["tensorflow-cpu>=2.15"],
        # torch reads torchvision state dicts for ImageNet weight import.
        "torch": ["torch>=2.0"],
    },
)
