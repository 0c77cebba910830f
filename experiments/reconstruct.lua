-- The reconstruction job: train a model that restores damaged fingerprints,
-- then measure how well it did on prints of fingers it never saw.
--
--   lua5.4 experiments/reconstruct.lua [--model masked] [--epochs 24] [--out out/reconstruct] ...
--   bin/whorl reconstruct --help                      (every option; docs/reconstruct.md)
--
-- By default: synthetic prints (whorl.synth) damaged by every kind of
-- whorl.synth.damage at random levels, drawn afresh each epoch, and the
-- masked U-Net (models/masked.lua), which learns where the damage is and
-- replaces only those pixels.  --data DIR trains on real prints instead.
-- The run folder gets config.json, history.csv, model.safetensors,
-- metrics.json, loss.png, samples.png, gradcam.png, minutiae.png and report.html.
local whorl = require "whorl"
local nn = require "whorl.nn"
local callbacks = require "whorl.callbacks"
local job = require "whorl.jobs.reconstruct"
local outputs = require "whorl.jobs.reconstruct_outputs"

local t0 = whorl.clock()
local o = job.options(arg)
job.mkdir(o.out)

-- 1. Data: damaged inputs, clean targets, and (for the masked model) damage masks.
print(o.data and ("Loading " .. o.data .. "...") or
    ("Generating %d synthetic prints at %dx%d..."):format((o.fingers + o.test_fingers) * o.impressions, o.size, o.size))
local sets = require("whorl.jobs.reconstruct_data").load(o)
print(("  %s (%.1f s)"):format(sets.about, whorl.clock() - t0))

-- 2. The model, its loss and optimizer; config.json says what this run is.
nn.clear_session()
local model = job.model(o)
local config = job.write_config(o, model)
if not o.quiet then model:summary{ input_shape = { 1, o.size, o.size } } end

-- 3. Training, checkpointed after every epoch (--resume goes on from it,
-- bit for bit: the damage of each epoch depends on (seed, epoch) only).
local checkpoint = o.out .. "/model.safetensors"
local t_train = whorl.clock()
local history = whorl.fit{
    model = model, loss = job.loss(o, model), optimizer = job.optimizer(o, model),
    train = sets.train, valid = sets.valid, batch_size = o.batch_size, epochs = o.epochs, seed = o.seed,
    resume = o.resume and checkpoint or nil, verbose = o.quiet and 2 or 1,
    callbacks = {
        callbacks.ModelCheckpoint(checkpoint),
        callbacks.CSVLogger(o.out .. "/history.csv", { append = o.resume }),
        callbacks.NaNGuard(),
    },
}
local train_seconds = whorl.clock() - t_train

-- 4. The test prints: whole-image and damaged-region scores, and identity
-- (does the restored print still match its finger?).
local restored, mask = outputs.restore(model, sets.test.damaged)
local metrics = outputs.scores(sets.test, restored)
local identity, why = outputs.identity(sets.test, restored, o.dpi)
if not identity then print("Identity: skipped (" .. why .. ")") end
metrics.identity = identity
metrics.params, metrics.epochs = config.params, #history.loss
metrics.final_loss, metrics.final_val_loss = history.loss[#history.loss], history.val_loss[#history.val_loss]
-- a resumed run adds the training time of the sessions before it
local before = o.resume and job.read_json(o.out .. "/metrics.json")
metrics.train_seconds = train_seconds + (before and before.train_seconds or 0)
outputs.print_scores(metrics, sets.test.about)

-- 5. Figures and the report.
outputs.samples(o.out .. "/samples.png", sets.test, restored, mask)
local k = outputs.showcase(sets.test)
local ok, err = outputs.gradcam(o.out .. "/gradcam.png", model, sets.test, k)
if not ok then print("Grad-CAM: skipped (" .. err .. ")") end
ok, err = outputs.minutiae(o.out .. "/minutiae.png", sets.test, restored, o.dpi, k)
if not ok then print("Minutiae figure: skipped (" .. err .. ")") end
metrics.seconds = whorl.clock() - t0
job.write_json(o.out .. "/metrics.json", metrics)
ok, err = outputs.report(o.out, ("whorl reconstruct: %s, %d epochs"):format(o.model, metrics.epochs))
if not ok then print("Report: skipped (" .. err .. ")") end
print(("\nRun folder: %s; %.0f s in all (training %.0f s)"):format(o.out, whorl.clock() - t0, train_seconds))
