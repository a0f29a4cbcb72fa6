#!/bin/bash
# The explainer's learning-rate schedule on the synthetic main job: one performer, the prior
# explainer with seeds 0 and 1, cosine vs constant learning rate (same epochs and warm-up).
# Prints entropy, relative deviation, accuracy and rank correlation with the planted rule.
set -e
R=${1:-runs/schedule}
P=$R/performer
python launch/run.py --config=configs/synthetic.py --workdir=$P --config.stages=performer
for s in 0 1; do
  for sched in cosine constant; do
    w=$R/${sched}_s$s
    mkdir -p $w && cp -r $P/performer $w/
    python launch/run.py --config=configs/synthetic.py --workdir=$w --config.seed=$s \
      --config.stages=performer,explainer,evaluate --config.explainer.variants=prior \
      --config.explainer.optimizer.schedule=$sched
    python -c "import json,sys; m=json.load(open(sys.argv[1]))['prior']; print(sys.argv[2], \
      'entropy %.3f deviation %.3f accuracy %.1f rank %.3f' % (m['entropy'], \
      m['relative_deviation'], m['accuracy'], m['gt_rank_correlation']))" $w/metrics.json "$sched seed $s"
  done
done
