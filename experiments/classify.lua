-- Fingerprint pattern classification: a small CNN learns the five Henry
-- classes (arch, tented arch, left loop, right loop, whorl) from synthetic
-- prints, is tested on fingers it never saw, and Grad-CAM shows where it
-- looked.
--
--   lua5.4 experiments/classify.lua [--size 64] [--epochs 8] [--out out/classify]
--
-- Training prints: --fingers fingers, as many of each class (the generator's
-- class option), --impressions each.  Validation (--valid-fingers, shown per
-- epoch) and test prints (--test-fingers): other fingers, one impression
-- each, with the generator's natural class frequencies (left loop 34%, so
-- always answering "left loop" scores about 0.34); --test-damage damages the
-- test prints.  The run folder gets model.safetensors, config.json,
-- history.csv, loss.png, report.html, metrics.json (accuracy, per-class recall, confusion matrix, how much
-- Grad-CAM heat lies near cores and deltas), confusion.csv and gradcam.png
-- (per class, held-out prints with the heat of their predicted class).
local argparse = require "argparse"
local cjson = require "cjson"
local whorl = require "whorl"
local nn = require "whorl.nn"
local optim = require "whorl.optim"
local callbacks = require "whorl.callbacks"
local gradcam = require "whorl.gradcam"
local plot = require "whorl.plot"
local report = require "whorl.report"
local files = require "whorl.files"
local classifier = require "classifier"

local parser = argparse("classify", "Classify fingerprint patterns (Henry classes) with a small CNN.")
parser:option("--size", "Image side in pixels.", "64", tonumber)
parser:option("--dpi", "Resolution of the synthetic prints (ridge period about 9 px at 500 dpi).", "190", tonumber)
parser:option("--fingers", "Training fingers (split evenly over the classes).", "600", tonumber)
parser:option("--impressions", "Impressions per training finger.", "2", tonumber)
parser:option("--valid-fingers", "Validation fingers (natural class frequencies), for the per-epoch val_ numbers.", "100", tonumber)
parser:option("--test-fingers", "Held-out test fingers (natural class frequencies), one impression each.", "400", tonumber)
parser:flag("--train-damage", "Add a damaged copy of every training print (every kind and level at random).")
parser:option("--test-damage", "Damage the test prints (every kind at random) at this level: easy, medium, hard.")
parser:option("--filters", "Convolution widths, comma-separated.", "16,32,64,64")
parser:flag("--no-batch-norm", "Leave out the batch normalisation after each convolution.")
parser:option("--epochs", "Training epochs.", "8", tonumber)
parser:option("--batch-size", "Batch size.", "32", tonumber)
parser:option("--lr", "Adam learning rate, decayed to 0 along a cosine over the run.", "0.002", tonumber)
parser:option("--radius", "Grad-CAM: radius around cores and deltas, in ridge periods.", "2", tonumber)
parser:option("--seed", "Seed of data, split and weights.", "7", tonumber)
parser:option("--out", "Run folder.", "out/classify")
local args = parser:parse()

local classes = whorl.synth.classes
local K = #classes
local class_id = {}
for i, c in ipairs(classes) do class_id[c] = i end

local function mkdir(path) assert(os.execute("mkdir -p '" .. path .. "'"), "cannot create " .. path) end
mkdir(args.out)

local function write_atomic(path, text) files.write_atomic(path, text, "classify") end

-- Prints and their labels (a float tensor of 1-based class ids, and infos).
local function labelled(images, infos, labels, all_infos)
    for _, info in ipairs(infos) do
        labels[#labels + 1] = class_id[info.class]
        all_infos[#all_infos + 1] = info
    end
    return images
end

local common = {size = args.size, dpi = args.dpi, seed = args.seed}

-- Training set: fingers 0 .. fingers-1, the same number of each class.
local function training_set()
    local parts, labels, infos = {}, {}, {}
    local per_class = math.ceil(args.fingers / K)
    for c = 1, K do
        local images, info = whorl.synth.batch{count = per_class * args.impressions,
            impressions = args.impressions, finger = (c - 1) * per_class, class = classes[c],
            size = common.size, dpi = common.dpi, seed = common.seed}
        parts[c] = labelled(images, info, labels, infos)
    end
    return whorl.cat(parts, 1), labels, infos
end

-- Validation and test sets: other fingers (from first_finger on), classes
-- as the generator draws them.
local function natural_set(count, first_finger)
    local labels, infos = {}, {}
    local images, info = whorl.synth.batch{count = count, finger = first_finger,
        size = common.size, dpi = common.dpi, seed = common.seed}
    return labelled(images, info, labels, infos), labels, infos
end

local t0 = whorl.clock()
print(("Generating %d training prints (%d fingers x %d impressions, classes balanced), and %d validation " ..
    "and %d test prints of other fingers, %dx%d at %d dpi...")
    :format(math.ceil(args.fingers / K) * K * args.impressions, math.ceil(args.fingers / K) * K,
        args.impressions, args.valid_fingers, args.test_fingers, args.size, args.size, args.dpi))
local train_x, train_labels = training_set()
if args.train_damage then
    local damaged = whorl.synth.damage(train_x, "random", {level = "random", seed = args.seed + 1})
    train_x = whorl.cat({train_x, damaged}, 1)
    table.move(train_labels, 1, #train_labels, #train_labels + 1)
end
local valid_x, valid_labels = natural_set(args.valid_fingers, 1000000)
local test_x, test_labels, test_infos = natural_set(args.test_fingers, 2000000)
if args.test_damage then
    test_x = whorl.synth.damage(test_x, "random", {level = args.test_damage, seed = args.seed})
end
print(("  done in %.1f s"):format(whorl.clock() - t0))

local filters = {}
for f in args.filters:gmatch("[^,]+") do filters[#filters + 1] = assert(tonumber(f), "--filters: not a number: " .. f) end

nn.clear_session()
local model = classifier{input_size = args.size, classes = K, filters = filters,
    batch_norm = not args.no_batch_norm, seed = args.seed}
model:summary()
local loss = nn.losses.CrossEntropy()
local accuracy = {name = "acc", fn = function(logits, labels)
    local pred = classifier.predict_classes(logits)
    local right = 0
    for i, l in ipairs(labels:totable()) do if pred[i] == l then right = right + 1 end end
    return right / #pred
end}
local steps = math.ceil(train_x:size(1) / args.batch_size) * args.epochs
local lr = optim.schedules.cosine{initial_lr = args.lr, decay_steps = steps}
local fit_start = whorl.clock()
local history = whorl.fit{
    model = model, loss = loss, optimizer = optim.Adam(model, {lr = lr}),
    train = {x = train_x, y = whorl.tensor(train_labels)}, valid = {x = valid_x, y = whorl.tensor(valid_labels)},
    batch_size = args.batch_size, epochs = args.epochs, seed = args.seed, metrics = {accuracy},
    callbacks = {callbacks.CSVLogger(args.out .. "/history.csv"), callbacks.NaNGuard()},
}
local train_seconds = whorl.clock() - fit_start
whorl.save(model, args.out .. "/model.safetensors", {loss = loss, epoch = #history.loss})

-- ---- accuracy and confusion on the held-out fingers ---------------------------------------

local logits = whorl.predict(model, test_x, {batch_size = 64})
local predicted = classifier.predict_classes(logits)
local confusion = classifier.confusion(predicted, test_labels, K)
local acc = classifier.accuracy(confusion)
local majority, recall = 0, {}
for i = 1, K do
    local row = 0
    for j = 1, K do row = row + confusion[i][j] end
    majority = math.max(majority, row)
    recall[classes[i]] = row > 0 and confusion[i][i] / row or cjson.null
end

print(("\nHeld-out fingers: %d prints%s, accuracy %.3f (always the commonest class: %.3f)")
    :format(#test_labels, args.test_damage and (", damaged (" .. args.test_damage .. ")") or "", acc,
        majority / #test_labels))
local header = {}
for i, c in ipairs(classes) do header[i] = ("%11s"):format(c) end
print(("%-12s %s   recall"):format("true \\ pred", table.concat(header, " ")))
local csv = {"true\\predicted," .. table.concat(classes, ",")}
for i = 1, K do
    local cells = {}
    for j = 1, K do cells[j] = ("%11d"):format(confusion[i][j]) end
    print(("%-12s %s   %s"):format(classes[i], table.concat(cells, " "),
        recall[classes[i]] == cjson.null and "-" or ("%.2f"):format(recall[classes[i]])))
    csv[#csv + 1] = classes[i] .. "," .. table.concat(confusion[i], ",")
end
write_atomic(args.out .. "/confusion.csv", table.concat(csv, "\n") .. "\n")

-- ---- Grad-CAM: where the model looked ---------------------------------------------------

-- Heat mass within `radius` pixels of the print's cores and deltas, and the
-- fraction of the image those discs cover (equal: no preference for them).
local function heat_near_singular(heat, info, radius)
    local h, w = heat:size(1), heat:size(2)
    local mask = {}
    for y = 1, h do
        for x = 1, w do
            local near = 0
            for _, s in ipairs(info.singular) do
                if (x - s.x) ^ 2 + (y - s.y) ^ 2 <= radius * radius then near = 1 end
            end
            mask[#mask + 1] = near
        end
    end
    local m = whorl.tensor(mask):view(h, w)
    local area, total = m:mean():item(), heat:sum():item()
    if area == 0 or total == 0 then return nil end
    return (heat * m):sum():item() / total, area
end

-- The heat of each test print's predicted class at the last conv layer
-- (8x8 at 64 px), in batches.
local cam_layer = gradcam.conv_layers(model)[#filters]
local heats = {}
for first = 1, #test_infos, 64 do
    local n = math.min(64, #test_infos - first + 1)
    heats[#heats + 1] = gradcam.compute(model, test_x:narrow(1, first, n), {layer = cam_layer})
end
heats = whorl.cat(heats, 1)

-- Own: each print's heat against its own cores and deltas.  Control: the
-- same heat against the singular points of the next print with any, which
-- keeps a preference for the middle of the finger but not for this print's
-- pattern.
local near = {mass = 0, area = 0, control = 0, count = 0}
for i, info in ipairs(test_infos) do
    local other
    for k = 1, #test_infos - 1 do
        local j = (i + k - 1) % #test_infos + 1
        if #test_infos[j].singular > 0 then other = test_infos[j]; break end
    end
    local mass, area = heat_near_singular(heats[i], info, args.radius * info.period)
    local control = other and heat_near_singular(heats[i], other, args.radius * other.period)
    if mass and control then
        near.mass, near.area, near.count = near.mass + mass, near.area + area, near.count + 1
        near.control = near.control + control
    end
end
if near.count > 0 then
    near.mass, near.area, near.control = near.mass / near.count, near.area / near.count, near.control / near.count
end
print(("\nGrad-CAM (layer %s): on average %.1f%% of the heat lies within %g ridge periods of a core or " ..
    "delta, discs that cover %.1f%% of the image; %.1f%% near another print's (%d prints with singular points)")
    :format(cam_layer, 100 * near.mass, args.radius, 100 * near.area, 100 * near.control, near.count))

-- Loops (one core, one delta): how far the heat's centroid lies from the
-- core towards the delta, in pixels along the core-delta line; 0 is
-- centred on the core.  Control: the same towards the delta mirrored
-- left-right about the core, which keeps the downward part (the heat may
-- just sit low on the finger) but not the side the delta is on.
local xs = whorl.arange(1, args.size + 1):view(1, args.size):expand(args.size, args.size):float()
local ys = whorl.arange(1, args.size + 1):view(args.size, 1):expand(args.size, args.size):float()
local shift = {delta = 0, mirrored = 0, core_to_delta = 0, count = 0}
for i, info in ipairs(test_infos) do
    local core, delta = nil, nil
    for _, p in ipairs(info.singular) do
        if p.type == "core" then core = p else delta = p end
    end
    local total = heats[i]:sum():item()
    if #info.singular == 2 and core and delta and total > 0 then
        local cx = (heats[i] * xs):sum():item() / total - core.x
        local cy = (heats[i] * ys):sum():item() / total - core.y
        local dx, dy = delta.x - core.x, delta.y - core.y
        local length = math.sqrt(dx * dx + dy * dy)
        shift.delta = shift.delta + (cx * dx + cy * dy) / length
        shift.mirrored = shift.mirrored + (-cx * dx + cy * dy) / length
        shift.core_to_delta, shift.count = shift.core_to_delta + length, shift.count + 1
    end
end
for _, k in ipairs({"delta", "mirrored", "core_to_delta"}) do shift[k] = shift[k] / math.max(1, shift.count) end
print(("Loops: the heat's centroid lies %.1f px from the core towards the delta, %.1f px towards the " ..
    "delta mirrored left-right (core to delta: %.1f px; %d prints)")
    :format(shift.delta, shift.mirrored, shift.core_to_delta, shift.count))

-- gradcam.png: per class, two held-out prints of it with the heat of their
-- predicted class over them; cores and deltas marked white.
local function mark_singular(rgb, info)
    local h, w = rgb:size(2), rgb:size(3)
    for _, s in ipairs(info.singular) do
        local cx, cy = math.floor(s.x + 0.5), math.floor(s.y + 0.5)
        for dy = -1, 1 do
            for dx = -1, 1 do
                local x, y = cx + dx, cy + dy
                if x >= 1 and x <= w and y >= 1 and y <= h and (dx == 0 or dy == 0) then
                    for ch = 1, 3 do rgb:set(ch, y, x, 1) end
                end
            end
        end
    end
    return rgb
end

local probabilities = logits:softmax(2)
local rows = {}
for c = 1, K do
    local row = {label = classes[c], images = {}, captions = {}}
    for i, l in ipairs(test_labels) do
        if l == c and #row.images < 4 then
            local pred = predicted[i]
            row.images[#row.images + 1] = test_x[i][1]
            row.captions[#row.captions + 1] = ("#%d"):format(i)
            row.images[#row.images + 1] = mark_singular(gradcam.overlay(test_x[i][1], heats[i]), test_infos[i])
            row.captions[#row.captions + 1] = ("%s %.2f"):format(classes[pred], probabilities[i]:totable()[pred])
        end
    end
    if #row.images > 0 then rows[#rows + 1] = row end
end
plot.image_grid{path = args.out .. "/gradcam.png", rows = rows, cell = 112,
    title = "Grad-CAM of the predicted class, held-out prints"}

local metrics = {
    accuracy = acc, majority_baseline = majority / #test_labels, test_images = #test_labels,
    test_damage = args.test_damage, train_damage = args.train_damage,
    train_images = train_x:size(1), classes = classes, confusion = confusion, recall = recall,
    gradcam = {layer = cam_layer, radius_periods = args.radius, heat_near_singular = near.mass,
        area_near_singular = near.area, heat_near_other_prints_singular = near.control, prints = near.count,
        loop_heat_shift_to_delta_px = shift.delta, loop_heat_shift_to_mirrored_delta_px = shift.mirrored,
        loop_core_to_delta_px = shift.core_to_delta,
        loops = shift.count},
    epochs = #history.loss, final_loss = history.loss[#history.loss],
    final_val_loss = history.val_loss[#history.val_loss],
    params = model:count_params(), train_seconds = train_seconds, seconds = whorl.clock() - t0,
}
write_atomic(args.out .. "/metrics.json", cjson.encode(metrics) .. "\n")
-- config.json: every option, so whorl restore-style loaders (and
-- experiments/gradcam.lua) know the size and dpi the model was trained at.
local config = {model = "classifier", params = model:count_params(), whorl = whorl.version}
for k, v in pairs(args) do config[k] = v end
write_atomic(args.out .. "/config.json", cjson.encode(config) .. "\n")
report.write_html(args.out, {title = "Fingerprint pattern classifier"})
print(("\nRun folder: %s (model.safetensors, config.json, history.csv, metrics.json, confusion.csv, loss.png, " ..
    "gradcam.png, report.html); %.0f s in all")
    :format(args.out, whorl.clock() - t0))
