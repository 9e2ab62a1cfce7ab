#!/usr/bin/env bash
# Rebuild the shipped assets and the numbers and figures of the README and docs/ (CPU, 2 cores: about
# 2 h 10 min of training, then the eraser and results). Made elsewhere, each by the command its doc names:
# the open-world files (scripts/open_world.sh, scripts/photos_only.py: docs/open-world.md), the answer and
# recognition gates (the header lines of docs/robustness_answer_gate*.md, robustness_recognition_gate.md),
# and the earlier seed-1 runs that docs/results.md's "Another seed" cites (results/seed1/, seed1_threads1/,
# seed1_shipped_recipe/, focus/*_seed1.json); SEED1=1 below redoes the current recipe's seed-1 rows.
#   bash scripts/reproduce.sh            # everything
#   SKIP_TRAIN=1 bash scripts/reproduce.sh   # keep the shipped models, redo eraser + results
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
if [ -z "${SKIP_TRAIN:-}" ]; then
  # the text model every toy model starts from (drills, lookups, refusals; no person in it): 24 min
  python -m core pretrain-text --seed 1 --out assets/toy-text
  # the vanilla model and its retain-only twin, one thread each, side by side: about 100 min (9000 steps,
  # then the 2000-step focus phase on picture MCQs). The shipped pair ran the focus phase alone on their saved
  # main-phase models (train-toy --init-from DIR --steps 0 --threads 1, 23 min), which gives the same weights.
  python -m core train-toy --out assets/toy-llava --seed 0 --threads 1 & vanilla=$!
  python -m core train-toy --out assets/toy-llava-retain-only --seed 0 --retain-only --forget forget_10 --threads 1 &
  wait $vanilla && wait $!
fi
python -m core world --seed 0 --grid docs/portraits.png
# The shipped eraser. The gate reads the prompt mean (concept 5): held-out AUC 0.96-0.98 against
# 0.72-0.80 at the last token (docs/results.md). Its ridge also takes the retain activations as target-0 rows
# (--retain-weight, ratio 1.0: no hard null space; docs/method-notes.md, concept 6), with one gate per forget person
# (--subject-gates, concept 7) on four times the default retain sample (--gate-retain 6400). prefill mode
# (the public code's). The tuner keeps 98% of held-out retain answers unchanged in each retain group
# (people by image, by name, general knowledge): a point of margin over the 97% target.
# These are `fit --preset workbench`, the default (core.eraser.PRESETS): the line below equals
#   fit ... --mode prefill --tune --ratio 1.0 --gamma 10 --retain-weight 0.3 --subject-gates --gate-retain 6400 --gate-position mean
# Then the gate is one ridge gate fitted over layers 0-3 together (joint_gate), read up to layer 3 before the
# steered layer 1 is steered: the reading with the fewest fires on held-out people (scripts/gate_heldout.py;
# docs/sequential.md says why). Pinned at what the tuner chose with the gate at layer 1 (layer 1 at 2.0); rerun
# with the joint gate (below), the tuner scores 1.5 and 2.0 the same and takes 1.5. The direction is the tuned fit's (same data, same seed). --gate-ramp reads the gate's
# floor and full value off the fit's own rows (docs/robustness_ramp.md); runs/eraser-no-ramp is the same without.
python scripts/gate_heldout.py
python -m core fit --model assets/toy-llava --forget forget_10 --out assets/toy-llava-eraser --no-tune \
  --steer-layers 1 --strength 2.0 --joint-gate 0,1,2,3 --gate-ramp --no-state
python -m core fit --model assets/toy-llava --forget forget_10 --out runs/eraser-no-ramp --no-tune \
  --steer-layers 1 --strength 2.0 --joint-gate 0,1,2,3 --no-state
# the tuner's grid for the shipped recipe (same gate; docs/results.md: it ties layer 1 at 1.5 and 2.0, takes 1.5)
python -m core fit --model assets/toy-llava --forget forget_10 --out runs/eraser-tuned-joint --tune \
  --joint-gate 0,1,2,3 --gate-ramp --no-state
cp runs/eraser-tuned-joint/tuning.json assets/toy-llava-eraser/tuning.json
python -m core evaluate --model assets/toy-llava --json results/vanilla.json
python -m core evaluate --model assets/toy-llava-retain-only --json results/retain_only.json
python -m core evaluate --model assets/toy-llava --eraser assets/toy-llava-eraser --json results/eraser.json
# the real split's text-only questions with the gate refitted without their facts, and the retained people
# with the gate refitted (and IdkNLL trained) without them, in 3 folds (docs/results.md)
python scripts/heldout_facts.py
python scripts/heldout_people.py
python scripts/heldout_people.py --method idk
# the same folds with a gate floor read off people the gate did not see, and the adaptive attack against it
python scripts/crossfit_ramp.py
python scripts/crossfit_ramp.py --save-only runs/eraser-crossfit-floor
python -m core attack --eraser runs/eraser-crossfit-floor --people 5 --curve --curve-only --curve-eps 16 \
  --curve-steps 40 --eot 2 --out results/defences/crossfit-floor-budget.md
python scripts/crossfit_ramp.py --floor 0.25
python scripts/crossfit_ramp.py --floor 0.25 --save-only runs/eraser-floor-0.25
python -m core attack --eraser runs/eraser-floor-0.25 --people 5 --curve --curve-only --curve-eps 16 \
  --curve-steps 40 --eot 1 --out results/defences/floor-0.25-budget.md
python scripts/crossfit_ramp.py --per-person
for g in 1 100 1000; do
  python scripts/crossfit_ramp.py --gamma $g --retain-weight 0.1
  python scripts/crossfit_ramp.py --gamma $g --retain-weight 0.1 --save-only runs/eraser-crossfit-g$g
  python -m core attack --eraser runs/eraser-crossfit-g$g --people 5 --curve --curve-only --curve-eps 16 \
    --curve-steps 40 --eot 1 --out results/defences/crossfit-floor-gamma$g-budget.md
done
# the two previous shipped erasers: the gate read at layer 3 alone, and at the steered layer itself
python -m core fit --model assets/toy-llava --forget forget_10 --out runs/eraser-gate-layer3 --no-tune \
  --steer-layers 1 --strength 2.0 --gate-layer 3
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-gate-layer3 --json results/eraser_gate_layer3.json
python -m core fit --model assets/toy-llava --forget forget_10 --out runs/eraser-own-layer --no-tune \
  --steer-layers 1 --strength 2.0
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-own-layer --json results/eraser_own_layer.json
# The previous preset: one gate with retain rows (weight 1, 1600 retain prompts), pinned at what the tuner
# chose for it then (layer 2 at 1.0, 97% bar), and MCQ at 1.5 by hand on it (docs/results.md comparison table). Both this
# fit and the paper's fit below, tuned with today's tuner on the current model (fit --tune, 98% bar), get the
# settings they are pinned at (checked once; docs/results.md "What the retain rows and the per-person gates changed").
python -m core fit --model assets/toy-llava --forget forget_10 --preset paper --out runs/eraser-retain-rows --mode prefill \
  --steer-layers 2 --strength 1.0 --ratio 1.0 --gamma 10 --retain-weight 1 --gate-position mean
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-retain-rows --json results/eraser_retain_rows.json
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-retain-rows --task-strength classification=1.5 \
  --json results/eraser_mcq_strength_retain_rows.json
# The comparison rows below use the paper's fit (null space only, ratio 0.6 / gamma 10: the preset before
# the retain rows). Each is pinned at the setting the earlier tuner chose for it (pooled retain score, 140 held-out
# retain prompts); per-layer fits are independent, so fitting only the steered layers gives the same gate.
# runs/eraser-null-space fits every layer and steers layer 3 (the attack report runs on it too).
python -m core fit --model assets/toy-llava --forget forget_10 --preset paper --out runs/eraser-null-space --mode prefill \
  --steer-layers 3 --strength 0.75 --ratio 0.6 --gamma 10 --gate-position mean
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-null-space --json results/eraser_null_space.json
# the method's last-token gate (tuned then: layers 2-3, 0.25; results/eraser_last_token_tuning.json holds that grid)
python -m core fit --model assets/toy-llava --forget forget_10 --preset paper --out runs/eraser-last-token --mode prefill \
  --layers 2,3 --strength 0.25 --ratio 0.6 --gamma 10
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-last-token --json results/eraser_last_token.json
# latched mode at the setting the tuner chose for it before it judged forget fluency on its own
# (layers 1-3, 0.25; docs/results.md: its steered answers degenerate)
python -m core fit --model assets/toy-llava --forget forget_10 --preset paper --out runs/eraser-latched --mode latched \
  --layers 1,2,3 --strength 0.25 --ratio 0.6 --gamma 10 --gate-position mean
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-latched --json results/eraser_latched.json
# a strength per task (the public code's lambda per task): what --tune-tasks chose then
# (results/eraser_task_tuned_tuning.json), and MCQ at 1.0 by hand
python -m core fit --model assets/toy-llava --forget forget_10 --preset paper --out runs/eraser-task-tuned --mode prefill \
  --layers 3 --strength 0.75 --task-strength generation=0.5 --task-strength cloze=0.25 --ratio 0.6 --gamma 10 \
  --gate-position mean
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-task-tuned --json results/eraser_task_tuned.json
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-null-space --task-strength classification=1.0 \
  --json results/eraser_mcq_strength.json
# the gate fitted on later-turn formats too (docs/results.md, "Attacking the eraser from the input side")
python -m core fit --model assets/toy-llava --forget forget_10 --preset paper --out runs/eraser-gate-variants --mode prefill \
  --ratio 0.6 --gamma 10 --gate-position mean --layers 3 --strength 0.75 --gate-variants 0.5
python -m core evaluate --model assets/toy-llava --eraser runs/eraser-gate-variants --json results/eraser_gate_variants.json
for m in ga ga_diff kl_min idk mmunlearner smfa vkd; do
  python -m core unlearn --method $m --out runs/baselines/$m
  python -m core evaluate --model runs/baselines/$m --json results/baseline_$m.json
done
python -m core unlearn --method npo --reference assets/toy-llava-retain-only --out runs/baselines/npo
python -m core evaluate --model runs/baselines/npo --json results/baseline_npo.json
python -m core relearn --model assets/toy-llava-retain-only $(for m in ga ga_diff kl_min npo idk mmunlearner smfa vkd; do
  echo --model runs/baselines/$m; done) --json results/relearn.json
python -m core sweep --out docs/ablations.md
python -m core attack --out docs/robustness.md
python -m core attack --people 5 --curve --curve-only --curve-eps 8,16,32,64 --curve-steps 40 --eot 2 --out docs/robustness_budget.md
python -m core attack --people 5 --curve --curve-only --curve-eps 8,16,32,64 --curve-steps 200 --eot 1 \
  --out docs/robustness_budget_200.md
python -m core sequential --json results/sequential.json --figure docs/sequential.png
python -m core sequential --group 2 --json results/sequential_pairs.json --figure docs/sequential_pairs.png
# the same with the two previous gate readings (docs/sequential.md, "Where the gate is read")
python -m core sequential --methods vanilla,eraser --gate-layer 3 --gate-floor 0 --gate-full 1 \
  --json results/sequential_gate_layer3.json
python -m core sequential --methods vanilla,eraser --eraser runs/eraser-own-layer --json results/sequential_own_layer.json
python scripts/lookalikes.py
python -m core attack --eraser runs/eraser-gate-layer3 --out docs/robustness_gate_layer3.md
python -m core attack --eraser runs/eraser-own-layer --out docs/robustness_own_layer.md
python -m core attack --eraser runs/eraser-gate-layer3 --people 5 --curve --curve-only --curve-eps 8,16,32,64 \
  --curve-steps 40 --eot 2 --out docs/robustness_budget_gate_layer3.md
# hardening the method's own-layer reading (docs/robustness_hardening.md)
python scripts/adversarial_gate.py --eraser runs/eraser-own-layer --rounds 4 --per-person 8 --steps 40 \
  --out docs/robustness_hardening.md
# adversarial gate fitting on the shipped eraser (without its ramp): the table, the two-sided variant, then the
# CLI recipe evaluated in full
python scripts/adversarial_gate.py --eraser runs/eraser-no-ramp --rounds 3 --out docs/robustness_hardening_joint.md
python scripts/adversarial_gate.py --eraser runs/eraser-no-ramp --rounds 3 --open-rows 80 \
  --out docs/robustness_hardening_two_sided.md
python scripts/adversarial_gate.py --eraser runs/eraser-gate-layer3 --rounds 3 --out docs/robustness_hardening_gate_layer.md
# two gate defences the adaptive attacker gets around: squeezed views of the image, image and text tokens apart
python scripts/gate_views.py --out docs/robustness_gate_views.md
python scripts/knn_gate.py --out docs/robustness_knn_gate.md
# the gate refitted on the directions that tell people apart only (docs/robustness_identity_gate.md)
for k in 8 32 96; do
  python scripts/identity_gate.py --k $k --out runs/eraser-identity-$k
  python -m core attack --eraser runs/eraser-identity-$k --people 10 --eps 16 --steps 40 --out runs/exp/identity${k}_attack.md
done
python -m core fit --model assets/toy-llava --forget forget_10 --out runs/eraser-hardened --no-tune --steer-layers 1 \
  --strength 2.0 --joint-gate 0,1,2,3 --adversarial-rounds 3
python -m core evaluate --eraser runs/eraser-hardened --json results/eraser_hardened.json
# the gate ramp (floor / full value) on the shipped and the hardened eraser: docs/robustness_ramp.md
for row in "assets/toy-llava-eraser 0 1 ship-f0" "assets/toy-llava-eraser 0.15 1 ship-f15" \
    "assets/toy-llava-eraser 0.25 1 ship-f25" "assets/toy-llava-eraser 0.15 0.5 ship-f15-t50" \
    "assets/toy-llava-eraser 0.2 0.35 ship-f20-t35" "assets/toy-llava-eraser 0.15 0.35 ship-f15-t35" \
    "runs/eraser-hardened 0 1 hard-f0" "runs/eraser-hardened 0.15 1 hard-f15" "runs/eraser-hardened 0.25 1 hard-f25" \
    "runs/eraser-hardened 0.15 0.5 hard-f15-t50" "runs/eraser-hardened 0.23 0.39 hard-rows"; do
  set -- $row
  python -m core evaluate --eraser $1 --gate-floor $2 --gate-full $3 --json results/ramp/$4.json
  python -m core attack --eraser $1 --gate-floor $2 --gate-full $3 --out results/ramp/$4-attack.md
done
cp results/eraser.json results/ramp/ship-rows.json; cp docs/robustness.json results/ramp/ship-rows-attack.json
# one hardening round with the ramp read off the grown rows (a recipe, the row closest to the project's bar)
python -m core fit --model assets/toy-llava --forget forget_10 --out runs/eraser-hardened-1 --no-tune --steer-layers 1 \
  --strength 2.0 --joint-gate 0,1,2,3 --adversarial-rounds 1 --gate-ramp
python -m core evaluate --eraser runs/eraser-hardened-1 --json results/ramp/hard1-rows.json
python -m core attack --eraser runs/eraser-hardened-1 --out results/ramp/hard1-rows-attack.md
python scripts/ramp_table.py
# every gate defence by attack budget (docs/robustness.md, written after the attack report above): 5 forget and
# 5 retained people, eps 8/16/32/64, 40 steps, each eraser attacked as deployed (about 3.5 min each)
for e in own-layer no-ramp hardened-1; do
  python -m core attack --eraser runs/eraser-$e --people 5 --curve --curve-only --curve-eps 8,16,32,64 --curve-steps 40 \
    --eot 1 --out results/defences/$e.md
done
python -m core attack --eraser runs/eraser-hardened --gate-floor 0.23 --gate-full 0.39 --people 5 --curve --curve-only \
  --curve-eps 8,16,32,64 --curve-steps 40 --eot 1 --out results/defences/hardened-3.md
# the eps 16 attack on the same 10 forget people's held-out pictures (their test split; about 1.6 min each):
# adversarial gate fitting attacks the fit's own pictures, the evaluated portraits among them
for e in own-layer no-ramp hardened-1 shipped hardened-3; do
  case $e in shipped) where="--eraser assets/toy-llava-eraser";;
             hardened-3) where="--eraser runs/eraser-hardened --gate-floor 0.23 --gate-full 0.39";;
             *) where="--eraser runs/eraser-$e";; esac
  python -m core attack $where --people 10 --eps 16 --steps 40 --held-out --curve --curve-only --curve-eps 16 \
    --curve-steps 40 --eot 1 --out results/defences/$e-held-out.md
  # the same portraits' attack keeping each image at its best PGD step, as an attacker would (about 3 min each)
  python -m core attack $where --people 10 --curve --curve-only --curve-eps 16 --curve-steps 40 --eot 1 \
    --pgd-keep best --out results/defences/$e-keep-best.md
done
# two variants of the one-round recipe, measured and not kept: hardening on each picture's best PGD step, and on
# 16 attacked pictures per person instead of 8 (the defence table's closing paragraph)
for v in "best-step --adversarial-keep best" "rows16 --adversarial-per-person 16"; do
  set -- $v
  python -m core fit --model assets/toy-llava --forget forget_10 --out runs/eraser-hardened-1-$1 --no-tune \
    --steer-layers 1 --strength 2.0 --joint-gate 0,1,2,3 --adversarial-rounds 1 --gate-ramp $2 $3
  python -m core attack --eraser runs/eraser-hardened-1-$1 --people 10 --curve --curve-only --curve-eps 16 \
    --curve-steps 40 --eot 1 --pgd-keep best --out results/defences/hardened-1-$1-keep-best.md
done
python scripts/defence_table.py
python -m core attack --eraser runs/eraser-retain-rows --out docs/robustness_retain_rows.md
python -m core attack --eraser runs/eraser-null-space --out docs/robustness_null_space.md
python -m core attack --eraser runs/eraser-gate-variants --out docs/robustness_gate_variants.md
python scripts/pgd_flips.py | tee results/pgd_flips.txt
{ python scripts/gate_selectivity.py --gate-retain 1600; echo; python scripts/gate_selectivity.py; } \
  > results/gate_selectivity.txt
python -m core bench --json results/bench.json
python -m core bench --shape llava-1.5-7b --json results/bench_llava-1.5-7b-shape.json
python -m core bench --shape qwen2.5-vl-7b --parts shared_starts --json results/bench_qwen2.5-vl-7b-shape.json
python scripts/bench_tables.py
python scripts/readme_figures.py
python scripts/screenshots.py
python scripts/results_table.py
# The shipped recipe on a second world (docs/seeds.md): SEED1=1 bash scripts/reproduce.sh. Both models trained from
# scratch on world seed 1, side by side (about 110 min), then the shipped eraser's flags unchanged.
if [ -n "${SEED1:-}" ]; then
  python -m core train-toy --out runs/seed1/toy-llava --seed 1 --threads 1 & vanilla=$!
  python -m core train-toy --out runs/seed1/toy-llava-retain-only --seed 1 --retain-only --forget forget_10 --threads 1 &
  wait $vanilla && wait $!
  python -m core fit --model runs/seed1/toy-llava --forget forget_10 --out runs/seed1/eraser --no-tune \
    --steer-layers 1 --strength 2.0 --joint-gate 0,1,2,3 --gate-ramp --no-state
  mkdir -p results/seed1_joint_gate
  python -m core evaluate --model runs/seed1/toy-llava --json results/seed1_joint_gate/vanilla.json
  python -m core evaluate --model runs/seed1/toy-llava-retain-only --json results/seed1_joint_gate/retain_only.json
  python -m core evaluate --model runs/seed1/toy-llava --eraser runs/seed1/eraser --json results/seed1_joint_gate/eraser.json
  python -m core attack --model runs/seed1/toy-llava --eraser runs/seed1/eraser --out results/seed1_joint_gate/robustness.md
  python -m core fit --model runs/seed1/toy-llava --forget forget_10 --out runs/seed1/eraser-hardened-1 --no-tune \
    --steer-layers 1 --strength 2.0 --joint-gate 0,1,2,3 --adversarial-rounds 1 --gate-ramp
  python -m core evaluate --model runs/seed1/toy-llava --eraser runs/seed1/eraser-hardened-1 \
    --json results/seed1_joint_gate/eraser_hardened_1.json
  python -m core attack --model runs/seed1/toy-llava --eraser runs/seed1/eraser-hardened-1 \
    --out results/seed1_joint_gate/robustness_hardened_1.md
  python scripts/seed_table.py
  python scripts/defence_table.py  # its seed-1 column
fi
