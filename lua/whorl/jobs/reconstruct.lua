-- The reconstruction job's options, run folder and model (the story is in
-- experiments/reconstruct.lua; the data in whorl.jobs.reconstruct_data, the
-- figures and scores in whorl.jobs.reconstruct_outputs).
--
--   local job = require "whorl.jobs.reconstruct"
--   local o = job.options(arg)        -- parsed, defaulted, checked against a resumed run
--   local model = job.model(o)
--   local loss, optimizer = job.loss(o, model), job.optimizer(o, model)
--   job.write_config(o, model)        -- <out>/config.json
--
-- Options left out take their default, or, with --resume, the resumed run's
-- value from its config.json; an option given with --resume that differs
-- from the run's is an error naming it (only --epochs may change: it is the
-- total to reach).
local argparse = require "argparse"
local whorl = require "whorl"
local optim = require "whorl.optim"
local losses = require "whorl.losses"
local checkpoint = require "whorl.checkpoint"
local files = require "whorl.files"

local M = {}

M.MODELS = { "autoencoder224", "autoencoder100", "unet", "masked" }
M.LOSSES = { "mse", "bce", "l1", "ssim", "mse+ssim", "l1+ridge" }
M.OPTIMIZERS = { rmsprop = "RMSprop", adam = "Adam", adamw = "AdamW", sgd = "SGD" }

-- Widths per level by model (about 70k parameters for the unet and masked
-- models; the seed autoencoders' own widths).
M.FILTERS = { autoencoder224 = "32,64,128", autoencoder100 = "32,64", unet = "16,32,64", masked = "16,32,64" }

-- The masked model's default loss is L1: with MSE its restored prints
-- matched their fingers worse (genuine score 0.43 against 0.46, measured
-- side by side): MSE's average of the possible ridges is a blur that moves minutiae.
M.MODEL_LOSS = { masked = "l1" }

M.DEFAULTS = { model = "masked", kernel_size = 3, loss = "mse", optimizer = "adam", lr = 0.001,
    epochs = 24, batch_size = 16, size = 64, dpi = 250, fingers = 160, impressions = 4,
    test_fingers = 100, seed = 13, frozen_damage = false, out = "out/reconstruct" }

-- The options that define a run: resuming it with other values is an error.
M.RUN_OPTIONS = { "model", "filters", "kernel_size", "loss", "optimizer", "lr", "batch_size", "size",
    "dpi", "fingers", "impressions", "test_fingers", "seed", "data", "frozen_damage" }

local function fail(fmt, ...) error("reconstruct: " .. string.format(fmt, ...), 0) end

function M.parser()
    local p = argparse("whorl reconstruct", "Train a model that restores damaged fingerprints, and " ..
        "measure it on prints of fingers it never saw.")
    p:option("--model", "Model: autoencoder224 (the seed repository's), autoencoder100 (the seed " ..
        "article's), unet, or masked (a U-Net that also finds the damage). Default masked.")
        :choices(M.MODELS)
    p:option("--filters", "Widths, one per level, comma-separated (default: " ..
        "32,64,128 autoencoder224; 32,64 autoencoder100; 16,32,64 unet and masked).")
    p:option("--kernel-size", "Convolution kernel side (default 3).", nil, tonumber)
    p:option("--loss", "Training loss: mse, bce, l1, ssim, mse+ssim, l1+ridge (L1 plus that of " ..
        "oriented ridge-filter responses; default l1 for the masked model, " ..
        "which adds the BCE of its damage mask; mse for the others).", nil):choices(M.LOSSES)
    p:option("--optimizer", "rmsprop, adam, adamw or sgd (default adam).", nil)
        :choices({ "rmsprop", "adam", "adamw", "sgd" })
    p:option("--lr", "Learning rate (default 0.001).", nil, tonumber)
    p:option("--epochs", "Epochs in all (with --resume: the total to reach; default 24).", nil, tonumber)
    p:option("--batch-size", "Batch size (default 16).", nil, tonumber)
    p:option("--size", "Image side in pixels (default 64).", nil, tonumber)
    p:option("--dpi", "Resolution of the synthetic prints and of the identity check (default 250: " ..
        "SOCOFing's scale, a ridge every 4.5 px, so a 64 px print holds about 14 ridges and enough " ..
        "minutiae to match; 500 dpi gives 9 px ridges).", nil, tonumber)
    p:option("--fingers", "Synthetic fingers for training and validation (default 160).", nil, tonumber)
    p:option("--impressions", "Synthetic impressions per finger (default 4).", nil, tonumber)
    p:option("--test-fingers", "Other synthetic fingers in the test set (default 100: 400 prints, " ..
        "for steadier mean match scores).", nil, tonumber)
    p:option("--seed", "Seed of the data, the split and the weights (default 13).", nil, tonumber)
    p:option("--out", "Run folder (default out/reconstruct).")
    p:option("--data", "A folder of real prints instead of synthetic ones: SOCOFing (Real/ and " ..
        "Altered/), damaged/ and clean/ subfolders, FVC (<finger>_<impression>.tif) or any clean " ..
        "images (damaged here); split 64/16/20 by finger where names give one.")
    p:flag("--frozen-damage", "Damage the training prints once instead of afresh every epoch.")
    p:flag("--resume", "Continue the run in --out from its checkpoint up to --epochs in all.")
    p:flag("--quiet", "One line per epoch instead of per-batch progress.")
    return p
end

local function filters_of(s)
    local list = {}
    for f in tostring(s):gmatch("[^,]+") do
        local n = math.tointeger(tonumber(f))
        if not n or n < 1 then fail("--filters: '%s' is not a positive integer", f) end
        list[#list + 1] = n
    end
    if #list == 0 then fail("--filters: give one width per level, e.g. 32,64,128") end
    return list
end

local function same(a, b)
    if type(a) == "table" and type(b) == "table" then
        if #a ~= #b then return false end
        for i = 1, #a do if a[i] ~= b[i] then return false end end
        return true
    end
    return a == b
end

local function show(v)
    if type(v) == "table" then return table.concat(v, ",") end
    return tostring(v)
end

function M.read_json(path)
    local text = files.read(path)
    if not text then return nil end
    local v, err = checkpoint.json_decode(text)
    if type(v) ~= "table" then fail("%s is not valid JSON: %s", path, tostring(err)) end
    return v
end

-- Writes v as JSON (sorted keys, exact numbers) through a temporary file.
function M.write_json(path, v)
    files.write_atomic(path, { checkpoint.json_encode(v, path), "\n" }, "reconstruct")
end

local function check_positive_integer(o, key)
    local v = o[key]
    if math.type(v) ~= "integer" then v = math.tointeger(v) end
    if not v or v < 1 then
        fail("--%s must be a positive integer, got %s", key:gsub("_", "-"), tostring(o[key]))
    end
    o[key] = v
end

-- The job's options from argv: defaults, the resumed run's values, checks.
function M.options(argv)
    local given = M.parser():parse(argv)
    if given.filters then given.filters = filters_of(given.filters) end
    local o = { out = given.out or M.DEFAULTS.out, resume = given.resume, quiet = given.quiet }
    local saved
    if o.resume then
        saved = M.read_json(o.out .. "/config.json")
        if not saved then fail("--resume: no run to resume in %s (its config.json is missing)", o.out) end
        if not io.open(o.out .. "/model.safetensors", "rb") then
            fail("--resume: %s has no checkpoint model.safetensors to resume from", o.out)
        end
        if not given.frozen_damage then given.frozen_damage = nil end
    end
    for _, key in ipairs(M.RUN_OPTIONS) do
        local v = given[key]
        if saved then
            if v ~= nil and saved[key] ~= nil and not same(v, saved[key]) then
                fail("--resume: --%s %s differs from the run's %s (%s/config.json); leave it out or " ..
                    "use another --out", key:gsub("_", "-"), show(v), show(saved[key]), o.out)
            end
            if v == nil then v = saved[key] end
        end
        if v == nil and key == "loss" then v = M.MODEL_LOSS[o.model] end
        if v == nil then v = M.DEFAULTS[key] end
        o[key] = v
    end
    o.epochs = given.epochs or (saved and saved.epochs) or M.DEFAULTS.epochs
    o.filters = o.filters or filters_of(M.FILTERS[o.model])
    for i, f in ipairs(o.filters) do o.filters[i] = math.tointeger(f) or f end
    for _, key in ipairs({ "kernel_size", "epochs", "batch_size", "size", "dpi", "fingers",
        "impressions", "test_fingers" }) do
        check_positive_integer(o, key)
    end
    o.seed = math.tointeger(o.seed) or fail("--seed must be an integer, got %s", tostring(o.seed))
    if not (o.lr > 0) then fail("--lr must be positive, got %s", tostring(o.lr)) end
    if o.kernel_size % 2 == 0 then fail("--kernel-size must be odd (\"same\" padding), got %d", o.kernel_size) end
    local pools = o.model == "autoencoder100" and #o.filters or #o.filters - 1
    if o.size % (1 << pools) ~= 0 or o.size < 16 then
        fail("--size %d: %s with %d levels halves the image %d times, so the size must be at least 16 " ..
            "and divisible by %d", o.size, o.model, #o.filters, pools, 1 << pools)
    end
    if o.data == nil and o.fingers * o.impressions < 5 then
        fail("--fingers x --impressions must give at least 5 prints (80/20 split), got %d",
            o.fingers * o.impressions)
    end
    return o
end

-- The model named by o.model, its weights drawn from o.seed.
function M.model(o)
    local opts = { filters = o.filters, kernel_size = o.kernel_size, seed = o.seed }
    -- the seed autoencoders are Sequentials with an Input layer of a fixed size
    if o.model:match("^autoencoder") then opts.input_size = o.size end
    -- the masked model starts by passing its input through (mask near 0.12)
    -- and draws its content as the standardized input at a gain and offset
    -- per print plus a change per pixel (models/masked.lua): a faint print
    -- is then restored by its gain, without redrawing (and moving) a ridge
    if o.model == "masked" then
        opts.mask_bias, opts.standardize, opts.input_skip, opts.affine = -2, true, true, true
    end
    return require(o.model)(opts)
end

function M.params(model)
    local n = 0
    for _, p in ipairs(model:parameters()) do n = n + p:numel() end
    return n
end

-- The reconstruction loss.  The masked model's adds the same loss of its
-- content head alone (so the content learns everywhere, not only where the
-- mask lets it through) and 0.1 x the BCE of its mask against the damage:
-- with a weight of 1 the mask term, ten times the size of the others, held
-- the trunk back (measured: 22.15 against 23.04 dB after 8 epochs).
function M.loss(o, model)
    local rec = ({
        mse = function() return losses.MSE() end,
        bce = function() return losses.BCE() end,
        l1 = function() return losses.L1() end,
        ssim = function() return losses.SSIM() end,
        ["mse+ssim"] = function() return losses.Sum{ { 1, losses.MSE() }, { 1, losses.SSIM() } } end,
        -- the ridge period of whorl.synth's prints: 9 px at 500 dpi
        ["l1+ridge"] = function()
            return losses.Sum{ { 1, losses.L1() }, { 1, losses.Ridge{ period = 9 * o.dpi / 500 } } }
        end,
    })[o.loss]()
    if o.model == "masked" then
        return require("masked").loss{ model = model, reconstruction = rec, mask_weight = 0.1,
            content_weight = 1 }
    end
    return rec
end

function M.optimizer(o, model)
    return optim[M.OPTIMIZERS[o.optimizer]](model, { lr = o.lr })
end

-- config.json: every option, the model's class and parameter count, whorl's version.
function M.write_config(o, model)
    local c = {}
    for _, key in ipairs(M.RUN_OPTIONS) do c[key] = o[key] end
    c.epochs, c.out = o.epochs, o.out
    c.architecture = model._type
    c.params = M.params(model)
    c.whorl_version = whorl.version
    M.write_json(o.out .. "/config.json", c)
    return c
end

function M.mkdir(path)
    if not os.execute("mkdir -p '" .. path:gsub("'", "'\\''") .. "'") then fail("cannot create folder %s", path) end
end

return M
