-- model:summary(): Keras 3's table, compared character for character with
-- Keras' own output (tests/fixtures/keras_summaries.json, written by
-- make_reference.py on an 80-column terminal), and the seed's rows
-- (../shared/reference/seed-repo-keras-224px.txt).
local whorl = require "whorl"
local nn = require "whorl.nn"
local cjson = require "cjson"
local autoencoder = require "autoencoder224"

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local function keras_text(name)
    local f = assert(io.open(HERE .. "fixtures/keras_summaries.json", "r"))
    local doc = cjson.decode(f:read("a"))
    f:close()
    return assert(doc.summaries[name], "no Keras summary " .. name)
end

-- The seed document's table with its padding collapsed, as it was pasted.
local SEED_ROWS = {
    "│ input_layer_1 (InputLayer) │ (None, 224, 224, 1) │ 0 │",
    "│ conv2d_6 (Conv2D) │ (None, 224, 224, 32) │ 320 │",
    "│ max_pooling2d_2 (MaxPooling2D) │ (None, 112, 112, 32) │ 0 │",
    "│ conv2d_7 (Conv2D) │ (None, 112, 112, 64) │ 18,496 │",
    "│ max_pooling2d_3 (MaxPooling2D) │ (None, 56, 56, 64) │ 0 │",
    "│ conv2d_8 (Conv2D) │ (None, 56, 56, 128) │ 73,856 │",
    "│ conv2d_9 (Conv2D) │ (None, 56, 56, 128) │ 147,584 │",
    "│ up_sampling2d_2 (UpSampling2D) │ (None, 112, 112, 128) │ 0 │",
    "│ conv2d_10 (Conv2D) │ (None, 112, 112, 64) │ 73,792 │",
    "│ up_sampling2d_3 (UpSampling2D) │ (None, 224, 224, 64) │ 0 │",
    "│ conv2d_11 (Conv2D) │ (None, 224, 224, 1) │ 577 │",
    "Total params: 314,625 (1.20 MB)",
    "Trainable params: 314,625 (1.20 MB)",
    "Non-trainable params: 0 (0.00 B)",
}

local function collapse(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

-- The seed notebook built its model twice in one Keras session, hence
-- conv2d_6... and "functional_1": build it twice here too.
local function seed_model()
    nn.clear_session()
    autoencoder()
    return autoencoder()
end

describe("summary of the seed 224x224 autoencoder", function()
    local model

    setup(function() model = seed_model() end)

    it("prints Keras' table exactly in Keras' channels-last order", function()
        local text = model:summary{ channels_last = true }
        assert.are.equal(keras_text("seed_224"), text)
        local lines = {}
        for line in text:gmatch("[^\n]+") do lines[#lines + 1] = collapse(line) end
        local i = 1
        for _, line in ipairs(lines) do
            if line == SEED_ROWS[i] then i = i + 1 end
        end
        assert.are.equal(#SEED_ROWS + 1, i, "seed row not found: " .. tostring(SEED_ROWS[i]))
    end)

    it("follows Keras' column sizing at other widths", function()
        assert.are.equal(keras_text("seed_224_line_100"),
            model:summary{ channels_last = true, line_length = 100, print = false })
    end)

    it("prints whorl's own NCHW shapes by default, with the same names and counts", function()
        local text = model:summary{ print = false }
        assert.truthy(text:find('Model: "functional_1"', 1, true))
        local want = {
            { "input_layer_1 (InputLayer)", "(None, 1, 224, 224)", "0" },
            { "conv2d_6 (Conv2D)", "(None, 32, 224, 224)", "320" },
            { "max_pooling2d_2 (MaxPooling2D)", "(None, 32, 112, 112)", "0" },
            { "conv2d_7 (Conv2D)", "(None, 64, 112, 112)", "18,496" },
            { "max_pooling2d_3 (MaxPooling2D)", "(None, 64, 56, 56)", "0" },
            { "conv2d_8 (Conv2D)", "(None, 128, 56, 56)", "73,856" },
            { "conv2d_9 (Conv2D)", "(None, 128, 56, 56)", "147,584" },
            { "up_sampling2d_2 (UpSampling2D)", "(None, 128, 112, 112)", "0" },
            { "conv2d_10 (Conv2D)", "(None, 64, 112, 112)", "73,792" },
            { "up_sampling2d_3 (UpSampling2D)", "(None, 64, 224, 224)", "0" },
            { "conv2d_11 (Conv2D)", "(None, 1, 224, 224)", "577" },
        }
        local rows = {}
        for a, b, c in text:gmatch("│ ([^│]-)%s*│ ([^│]-)%s*│%s*([%d,]+) │") do
            rows[#rows + 1] = { a, b, c }
        end
        assert.are.same(want, rows)
        assert.truthy(text:find(" Total params: 314,625 (1.20 MB)", 1, true))
    end)

    it("leaves the model as it was: modes, running statistics, random generator", function()
        local m = nn.Sequential{ nn.Input{ shape = { 2, 8, 8 } }, nn.BatchNorm2d(2), nn.Dropout(0.5) }
        local rng = whorl.get_rng_state()
        m:summary{ print = false, input = whorl.rand({ 4, 2, 8, 8 }) * 5 + 3 }
        assert.are.equal(0, m.modules_list[2].running_mean:abs():sum():item())
        assert.is_true(m.modules_list[3].training)
        assert.is_true(rng ~= whorl.get_rng_state()) -- the rand above drew numbers
        rng = whorl.get_rng_state()
        m:summary{ print = false }
        assert.are.equal(rng, whorl.get_rng_state())
    end)
end)

describe("summary of other layers", function()
    it("matches Keras, cells wrapped, buffers non-trainable", function()
        nn.clear_session()
        local m = nn.Sequential{
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.LeakyReLU(), nn.AvgPool2d(2),
            nn.ConvTranspose2d(4, 2, 3), nn.Flatten(), nn.Linear(50, 3), nn.Dropout(0.5),
            nn.Identity(),
        }
        -- Keras' Sequential shows no input row; whorl takes the shape as an option
        assert.are.equal(keras_text("layers"),
            m:summary{ input_shape = { 3, 8, 8 }, channels_last = true, print = false })
    end)

    it("counts frozen parameters as non-trainable", function()
        local m = nn.Sequential{ nn.Conv2d(1, 2, 3), nn.Conv2d(2, 1, 3) }
        m.modules_list[1]:freeze()
        local text = m:summary{ input_shape = { 1, 8, 8 }, print = false }
        assert.truthy(text:find(" Trainable params: 19 (76.00 B)", 1, true))
        assert.truthy(text:find(" Non-trainable params: 20 (80.00 B)", 1, true))
    end)

    it("shows '?' for a child that the forward never called", function()
        local Net = nn.Module:extend("SummaryNet")
        function Net:__init()
            self.used = nn.Conv2d(1, 1, 3, { name = "used" })
            self.spare = nn.Conv2d(1, 1, 3, { name = "spare" })
        end
        function Net:forward(x) return self.used(x) end
        local text = Net():summary{ input_shape = { 1, 5, 5 }, print = false }
        assert.truthy(text:find("│ used (Conv2D)                   │ (None, 1, 3, 3)", 1, true))
        assert.truthy(text:find("│ spare (Conv2D)                  │ ?", 1, true))
    end)

    it("says what it needs and which layer failed", function()
        local m = nn.Sequential{ nn.Conv2d(3, 4, 3) }
        local ok, err = pcall(m.summary, m, { print = false })
        assert.is_false(ok)
        assert.truthy(tostring(err):find("give input_shape", 1, true))
        ok, err = pcall(m.summary, m, { input_shape = { 1, 8, 8 }, print = false })
        assert.is_false(ok)
        assert.truthy(tostring(err):find("running an input of shape [1, 1, 8, 8] failed", 1, true))
        assert.truthy(tostring(err):find("(Conv2d): expected input of shape (N, 3, H, W)", 1, true))
    end)

    it("sends the text to print_fn", function()
        local got
        local text = nn.Sequential{ nn.ReLU() }:summary{ input_shape = { 2 },
            print_fn = function(s) got = s end }
        assert.are.equal(text, got)
    end)
end)
