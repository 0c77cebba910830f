-- A small CNN that tells the five Henry classes of a fingerprint apart
-- (arch, tented arch, left loop, right loop, whorl), as an nn.Sequential of
-- built-in layers, so whorl.load rebuilds a saved one without this file:
--
--   Input (1, H, W)
--   per width f of filters: Conv2D f relu (3x3, same), BatchNorm, MaxPool 2
--       (the last width gets no pooling: Grad-CAM reads its map)
--   GlobalAveragePooling2D, Dropout, Dense classes   (logits; train with
--   losses.CrossEntropy, whose softmax is inside the loss)
--
--   local classifier = require "classifier"
--   local model = classifier{input_size = 64, seed = 1}
--   local logits = model(x)                          -- (N, 5)
--   local pred = classifier.predict_classes(logits)  -- {k per image}, 1-based
--   local m = classifier.confusion(pred, labels, 5)  -- m[true][predicted] counts
--   classifier.accuracy(m)
--
-- Options:
--   input_size   64, a number or {h, w}; -1 accepts any size (global pooling
--                makes the head independent of it)
--   channels     1
--   classes      5
--   filters      {16, 32, 64, 64}
--   kernel_size  3
--   batch_norm   true: a BatchNorm2d after each convolution (without it the
--                net sits at loss log(5) for several epochs before it learns)
--   dropout      0.2 before the last layer (0: none)
--   seed         draw the weights from nn.init.generator(seed)
--   name, dtype
local nn = require "whorl.nn"

local DEFAULTS = { input_size = 64, channels = 1, classes = 5, filters = { 16, 32, 64, 64 },
    kernel_size = 3, batch_norm = true, dropout = 0.2, dtype = "float32" }

local function check(o)
    for key in pairs(o) do
        if DEFAULTS[key] == nil and key ~= "seed" and key ~= "name" then
            error(string.format("classifier: unknown option '%s'", tostring(key)), 3)
        end
    end
    if type(o.filters) ~= "table" or #o.filters == 0 then
        error("classifier: filters must be a non-empty list of widths", 3)
    end
    if math.type(o.classes) ~= "integer" or o.classes < 2 then
        error("classifier: classes must be an integer >= 2, got " .. tostring(o.classes), 3)
    end
    if type(o.dropout) ~= "number" or o.dropout < 0 or o.dropout >= 1 then
        error("classifier: dropout must be a number in [0, 1), got " .. tostring(o.dropout), 3)
    end
end

local function build(o)
    local size = o.input_size
    if type(size) == "number" then size = { size, size } end
    local layers = { nn.Input{ shape = { o.channels, size[1], size[2] } } }
    local cin = o.channels
    for i, f in ipairs(o.filters) do
        layers[#layers + 1] = nn.Conv2d(cin, f, o.kernel_size,
            { padding = "same", activation = "relu", dtype = o.dtype })
        if o.batch_norm then layers[#layers + 1] = nn.BatchNorm2d(f, { dtype = o.dtype }) end
        if i < #o.filters then layers[#layers + 1] = nn.MaxPool2d(2) end
        cin = f
    end
    layers[#layers + 1] = nn.GlobalAvgPool2d()
    if o.dropout > 0 then layers[#layers + 1] = nn.Dropout(o.dropout) end
    layers[#layers + 1] = nn.Linear(cin, o.classes, { dtype = o.dtype })
    layers.name = o.name or nn.unique_name("classifier")
    return nn.Sequential(layers)
end

local M = {}

local function new(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("classifier: options must be a table", 2) end
    local o = {}
    for k, v in pairs(DEFAULTS) do o[k] = v end
    for k, v in pairs(opts) do o[k] = v end
    check(o)
    if o.seed ~= nil then return nn.init.with_seed(o.seed, build, o) end
    return build(o)
end

-- The predicted class of each row of logits (N, K): a list of 1-based ids.
function M.predict_classes(logits)
    if logits:dim() ~= 2 then
        error("classifier.predict_classes: expected logits (N, K), got [" ..
            table.concat(logits:size(), ", ") .. "]", 2)
    end
    local am = logits:argmax(2):totable()
    for i, v in ipairs(am) do am[i] = math.tointeger(v) end
    return am
end

-- The confusion matrix: m[true class][predicted class] = count, both 1..k.
-- A label or prediction outside 1..k is an error naming the sample.
function M.confusion(predicted, labels, k)
    if type(predicted) ~= "table" or type(labels) ~= "table" or #predicted ~= #labels then
        error(string.format("classifier.confusion: expected two lists of one length, got %s and %s",
            type(predicted) == "table" and #predicted or type(predicted),
            type(labels) == "table" and #labels or type(labels)), 2)
    end
    if math.type(k) ~= "integer" or k < 1 then error("classifier.confusion: k must be a class count", 2) end
    local m = {}
    for i = 1, k do
        m[i] = {}
        for j = 1, k do m[i][j] = 0 end
    end
    for s = 1, #labels do
        local t, p = labels[s], predicted[s]
        for _, v in ipairs({ { "label", t }, { "prediction", p } }) do
            if math.type(v[2]) ~= "integer" or v[2] < 1 or v[2] > k then
                error(string.format("classifier.confusion: sample %d has %s %s, outside 1..%d", s,
                    v[1], tostring(v[2]), k), 2)
            end
        end
        m[t][p] = m[t][p] + 1
    end
    return m
end

-- The fraction on the diagonal of a confusion matrix.
function M.accuracy(m)
    local right, all = 0, 0
    for i, row in ipairs(m) do
        for j, c in ipairs(row) do
            all = all + c
            if i == j then right = right + c end
        end
    end
    return all > 0 and right / all or 0
end

return setmetatable(M, { __call = function(_, opts) return new(opts) end })
