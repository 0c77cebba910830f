-- Grad-CAM for a trained whorl model: where in a print did it look?
--
--   lua5.4 experiments/gradcam.lua --model out/classify/model.safetensors --score class
--   lua5.4 experiments/gradcam.lua --model out/reconstruct/model.safetensors --score mask
--   lua5.4 experiments/gradcam.lua --model run/model.safetensors --list-layers
--   lua5.4 experiments/gradcam.lua print1.png print2.png --model run/model.safetensors --layer conv2d_2
--   lua5.4 experiments/gradcam.lua              (no --model: trains a tiny restorer first, ~10 s)
--
-- Images are files (read grey, fitted to the model's input size) or, when
-- none are given, --count synthetic prints (damaged for a restoration model,
-- whose "mask" score then explains the restored damage).  Writes, in --out,
-- gradcam.png (the first image: input, heat, overlay) and, for several
-- images, gradcam_grid.png (each image with its heat over it).
local argparse = require "argparse"
local whorl = require "whorl"
local nn = require "whorl.nn"
local optim = require "whorl.optim"
local plot = require "whorl.plot"
local gradcam = require "whorl.gradcam"

local parser = argparse("gradcam", "Grad-CAM heat maps for a whorl model.")
parser:argument("images", "Image files (default: synthetic prints)."):args("*")
parser:option("--model", "A checkpoint written by whorl.save (whorl.load rebuilds the model).")
parser:option("--layer", "The conv layer to explain (default: the last one before the output).")
parser:flag("--list-layers", "List the conv layers with their output shapes, then stop.")
parser:option("--score", "mean, region, mask (damage mask of synthetic prints) or class.")
parser:option("--region", "x,y,w,h: the output region for --score region (1-based pixels).")
parser:option("--class", "Class for --score class: a number or a name (arch, ..., whorl); default the predicted one.")
parser:option("--size", "Input size when the model does not fix it.", "64", tonumber)
parser:option("--dpi", "Resolution of the synthetic prints (default: the model's config.json, else 250).", nil, tonumber)
parser:option("--count", "Synthetic prints when no image is given.", "4", tonumber)
parser:option("--seed", "Seed of the synthetic prints (and of the tiny model).", "3", tonumber)
parser:option("--out", "Output folder.", "out/gradcam")
local args = parser:parse()

local function die(fmt, ...)
    io.stderr:write("gradcam: ", string.format(fmt, ...), "\n")
    os.exit(1)
end

-- A small autoencoder restoring damaged prints, trained for a few epochs.
local function tiny_model(size, dpi)
    print("No --model: training a tiny restoration autoencoder on damaged synthetic prints...")
    local clean = whorl.synth.batch{count = 64, size = size, dpi = dpi, seed = args.seed + 100, info = false}
    local damaged = whorl.synth.damage(clean, "random", {level = "random", seed = args.seed})
    local model = require("autoencoder100"){input_size = size, filters = {8, 16}, seed = args.seed}
    whorl.fit{model = model, loss = nn.losses.MSE(), optimizer = optim.Adam(model),
        train = {x = damaged, y = clean}, batch_size = 16, epochs = 4, seed = args.seed, verbose = 2}
    return model
end

local model, size, dpi = nil, {args.size, args.size}, args.dpi
if args.model then
    -- the size and dpi come from the model's input layer or its run's config.json
    local ok, loaded, info = pcall(require("whorl.cli.restore").load_model, args.model, nil)
    if not ok then die("%s", (tostring(loaded):gsub("^whorl restore: ", ""))) end
    model, size = loaded, info.size
    dpi = dpi or info.dpi or 250
else
    dpi = dpi or 250
    model = tiny_model(args.size, dpi)
end

-- The inputs (N, 1, H, W), and the damage mask of synthetic ones.
local x, mask
if #args.images > 0 then
    local list = {}
    for i, path in ipairs(args.images) do
        local ok, img = pcall(whorl.image.read, path)
        if not ok then die("cannot read %s: %s", path, tostring(img)) end
        list[i] = whorl.image.fit(img, size):view(1, 1, size[1], size[2])
    end
    x = whorl.cat(list, 1)
else
    x = whorl.synth.batch{count = args.count, size = size, dpi = dpi, seed = args.seed, info = false}
end
model:eval()
local probe = whorl.no_grad(function() return (model(x:narrow(1, 1, 1))) end)
local classifies = probe:dim() == 2
local class_names = classifies and probe:size(2) == #whorl.synth.classes and whorl.synth.classes or nil
if #args.images == 0 and not classifies then -- a restoration model gets damaged prints
    x, mask = whorl.synth.damage(x, "random", {level = "hard", seed = args.seed})
end

if args.list_layers then
    for _, name in ipairs(gradcam.conv_layers(model)) do
        local layer = model:get(name)
        local shape
        local hook = layer:register_forward_hook(function(_, out) shape = out:size() end)
        whorl.no_grad(function() return model(x:narrow(1, 1, 1)) end)
        hook.remove()
        print(("%-24s %-16s (N, %s)"):format(name, layer._type, table.concat(shape, ", ", 2)))
    end
    os.exit(0)
end

local opts = {layer = args.layer, score = args.score}
if args.region then
    local r = {}
    for v in args.region:gmatch("[^,]+") do r[#r + 1] = math.tointeger(tonumber(v)) end
    opts.region, opts.score = r, opts.score or "region"
end
if args.class then
    opts.class = math.tointeger(tonumber(args.class))
    for i, name in ipairs(whorl.synth.classes) do if name == args.class then opts.class = i end end
    if not opts.class then die("--class %s: expected a number or one of %s", args.class, table.concat(whorl.synth.classes, ", ")) end
    opts.score = opts.score or "class"
end
if opts.score == "mask" then
    if not mask then die("--score mask needs synthetic prints of a restoration model (their damage mask)") end
    opts.mask = mask:view(x:size(1), size[1], size[2])
end

local ok, heat, info = pcall(gradcam.compute, model, x, opts)
if not ok then die("%s", (tostring(heat):gsub("^gradcam: ", ""))) end
assert(os.execute("mkdir -p '" .. args.out .. "'"))

-- What each heat map explains, for titles and captions.
local function what(i)
    if info.classes then
        local k = info.classes[i]
        return "class " .. (class_names and class_names[k] or tostring(k))
    end
    return "score " .. info.score
end

gradcam.figure{path = args.out .. "/gradcam.png", image = x[1][1], heat = heat[1],
    title = ("Grad-CAM at %s, %s"):format(info.layer, what(1))}
local written = "gradcam.png"
if x:size(1) > 1 then
    local images, captions = {}, {}
    for i = 1, x:size(1) do
        images[#images + 1], captions[#captions + 1] = x[i][1], "input " .. i
        images[#images + 1], captions[#captions + 1] = gradcam.overlay(x[i][1], heat[i]), what(i)
    end
    plot.image_grid{path = args.out .. "/gradcam_grid.png", rows = {{images = images, captions = captions}},
        cell = 128, title = "Grad-CAM at " .. info.layer}
    written = written .. ", gradcam_grid.png"
end
print(("Layer %s (activation %s), score %s: %s written to %s")
    :format(info.layer, table.concat(info.activation, "x"), info.score, written, args.out))
