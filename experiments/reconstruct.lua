-- The reconstruction job: restore damaged fingerprints with the seed
-- convolutional autoencoder and measure how well it worked.
--
--   lua5.4 experiments/reconstruct.lua [--size 64] [--epochs 12] [--out out/reconstruct]
--
-- By default it generates synthetic prints (whorl.synth), damages them
-- (every damage kind of whorl.synth.damage, at random levels, drawn afresh
-- each epoch for the training prints), splits them
-- 80/20 with a fixed seed, and keeps a test set of other fingers with
-- freshly drawn damage (the seed project's "another sensor" test).  The run
-- folder gets the model checkpoint, history.csv, metrics.json and
-- samples.png (rows: clean, damaged, restored).
local argparse = require "argparse"
local cjson = require "cjson"
local whorl = require "whorl"
local nn = require "whorl.nn"
local optim = require "whorl.optim"
local callbacks = require "whorl.callbacks"
local losses = require "whorl.losses"
local augment = require "whorl.augment"
local autoencoder = require "autoencoder224"

local parser = argparse("reconstruct", "Restore damaged fingerprints with a convolutional autoencoder.")
parser:option("--size", "Image side in pixels.", "64", tonumber)
parser:option("--dpi", "Resolution of the synthetic prints (ridge period about 9 px at 500 dpi).", "500", tonumber)
parser:option("--fingers", "Fingers in the train/validation set.", "160", tonumber)
parser:option("--impressions", "Impressions per finger.", "4", tonumber)
parser:option("--test-fingers", "Other fingers in the test set.", "40", tonumber)
parser:option("--filters", "Encoder widths, comma-separated (the seed: 32,64,128).", "32,64,128")
parser:option("--epochs", "Training epochs.", "12", tonumber)
parser:option("--batch-size", "Batch size.", "16", tonumber)
parser:option("--lr", "RMSprop learning rate.", "0.001", tonumber)
parser:option("--seed", "Seed of data, split and weights (the seed project's random_state).", "13", tonumber)
parser:option("--out", "Run folder.", "out/reconstruct")
parser:flag("--frozen-damage", "Damage the training prints once instead of afresh every epoch.")
local args = parser:parse()

local function mkdir(path) assert(os.execute("mkdir -p '" .. path .. "'"), "cannot create " .. path) end
mkdir(args.out)

local function filters_of(s)
    local list = {}
    for f in s:gmatch("[^,]+") do list[#list + 1] = assert(tonumber(f), "--filters: not a number: " .. f) end
    return list
end

-- Prints of `fingers` fingers with `impressions` each, and a damaged copy.
local function make_set(seed, fingers, impressions)
    local clean = whorl.synth.batch{count = fingers * impressions, impressions = impressions,
        size = args.size, dpi = args.dpi, seed = seed, info = false}
    local damaged, mask = whorl.synth.damage(clean, "random", {level = "random", seed = seed + 1})
    return clean, damaged, mask
end

-- A random 80/20 split over images, reproducible from the seed.
local function split(n, fraction, seed)
    whorl.manual_seed(seed)
    local u = whorl.rand(n, "float64"):totable()
    local perm = {}
    for i = 1, n do perm[i] = i end
    for i = n, 2, -1 do -- Fisher-Yates
        local j = math.floor(u[i] * i) + 1
        perm[i], perm[j] = perm[j], perm[i]
    end
    local cut = math.floor(n * fraction + 0.5)
    return {table.unpack(perm, 1, cut)}, {table.unpack(perm, cut + 1, n)}
end

local function rows(t, idx)
    local parts = {}
    for i, k in ipairs(idx) do parts[i] = t:narrow(1, k, 1) end
    return whorl.cat(parts, 1)
end

local t0 = whorl.clock()
print(("Generating %d synthetic prints (%d fingers x %d impressions) at %dx%d, and %d test prints of other fingers...")
    :format(args.fingers * args.impressions, args.fingers, args.impressions, args.size, args.size,
             args.test_fingers * args.impressions))
local clean, damaged = make_set(args.seed, args.fingers, args.impressions)
local test_clean, test_damaged, test_mask = make_set(args.seed + 1000, args.test_fingers, args.impressions)
print(("  done in %.1f s"):format(whorl.clock() - t0))

local train_idx, valid_idx = split(clean:size()[1], 0.8, args.seed)
-- Training prints get new damage every epoch (whorl.augment) unless frozen;
-- validation keeps one fixed draw so its loss is comparable across epochs.
local train = args.frozen_damage and {x = rows(damaged, train_idx), y = rows(clean, train_idx)}
    or augment.damaged(rows(clean, train_idx), {seed = args.seed})
local valid = {x = rows(damaged, valid_idx), y = rows(clean, valid_idx)}

nn.clear_session()
local model = autoencoder{input_size = args.size, filters = filters_of(args.filters), seed = args.seed}
model:summary()
local history = whorl.fit{
    model = model, loss = losses.MSE(), optimizer = optim.RMSprop(model, {lr = args.lr}),
    train = train, valid = valid, batch_size = args.batch_size, epochs = args.epochs, seed = args.seed,
    callbacks = {
        callbacks.ModelCheckpoint(args.out .. "/model.safetensors", {save_best_only = true}),
        callbacks.CSVLogger(args.out .. "/history.csv"),
        callbacks.NaNGuard(),
    },
}

-- Evaluate on the held-out fingers, whole image and damaged region only.
local restored = whorl.predict(model, test_damaged, {batch_size = 32})
-- whorl.metrics: MSE, PSNR and SSIM (11x11 Gaussian window) per image,
-- averaged, over the whole image and over the damaged pixels only.
local metrics = whorl.metrics.compare(test_clean, test_damaged, restored, {mask = test_mask})
metrics.test_images, metrics.epochs = test_clean:size()[1], #history.loss
metrics.final_loss, metrics.final_val_loss = history.loss[#history.loss], history.val_loss[#history.val_loss]
local f = assert(io.open(args.out .. "/metrics.json", "w"))
f:write(cjson.encode(metrics), "\n")
f:close()

-- samples.png: 10 test prints, rows clean / damaged / restored.
local n = math.min(10, test_clean:size()[1])
local function strip(t)
    local cols = {}
    for i = 1, n do cols[i] = t[(i - 1) * math.max(1, test_clean:size()[1] // n) + 1][1] end
    return whorl.cat(cols, 2)
end
whorl.image.write(args.out .. "/samples.png", whorl.cat({strip(test_clean), strip(test_damaged), strip(restored)}, 1))

print(("\nTest set (%d prints of %d unseen fingers):"):format(metrics.test_images, args.test_fingers))
print(("%-8s %-9s %10s %10s %8s"):format("region", "prints", "MSE", "PSNR", "SSIM"))
for _, region in ipairs({"whole", "region"}) do
    for _, which in ipairs({"damaged", "restored"}) do
        local m = metrics[region][which]
        print(("%-8s %-9s %10.5f %7.2f dB %8.3f"):format(region == "region" and "damaged" or "whole",
            which, m.mse, m.psnr, m.ssim))
    end
end
print(("\nRun folder: %s (model.safetensors, history.csv, metrics.json, samples.png); %.0f s in all")
    :format(args.out, whorl.clock() - t0))
