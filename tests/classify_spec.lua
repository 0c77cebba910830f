-- The fingerprint pattern classifier: losses.CrossEntropy, nn.GlobalAvgPool2d
-- and nn.GlobalMaxPool2d, models/classifier.lua (shapes, confusion matrix,
-- a short fit whose loss falls) and experiments/classify.lua end to end on
-- a tiny set.
local whorl = require "whorl"
local nn = require "whorl.nn"
local optim = require "whorl.optim"
local cjson = require "cjson"
local gradcheck = require "helpers.gradcheck"
local files = require "helpers.files"
local classifier = require "classifier"
local check = require "helpers.check"
local max_diff, raises = check.max_diff, check.raises

describe("losses.CrossEntropy", function()
    local logits, target
    before_each(function()
        whorl.manual_seed(3)
        logits = whorl.randn({ 4, 5 }, "float64")
        logits.requires_grad = true
        target = whorl.tensor({ 1, 5, 3, 3 })
    end)

    it("is whorl.cross_entropy on 1-based class ids, with Keras' names", function()
        local loss = nn.losses.CrossEntropy()
        assert.are.equal(whorl.cross_entropy(logits, target):item(), loss(logits, target):item())
        -- by hand: mean of logsumexp(z) - z[target]
        local z, want = logits:totable(), 0
        for i, t in ipairs(target:totable()) do
            local s = 0
            for _, v in ipairs(z[i]) do s = s + math.exp(v) end
            want = want + math.log(s) - z[i][t]
        end
        assert.is_true(math.abs(loss(logits, target):item() - want / 4) < 1e-12)
        assert.are.equal("CrossEntropy", nn.losses.get("sparse_categorical_crossentropy").type)
        assert.are.equal("CrossEntropy", nn.losses.get("cross_entropy").type)
    end)

    it("weights samples (third argument) and classes (class_weights)", function()
        local loss = nn.losses.CrossEntropy()
        local per = nn.losses.CrossEntropy{ reduction = "none" }(logits, target)
        assert.are.same({ 4 }, per:size())
        local w = whorl.tensor({ 2, 0, 1, 1 }, "float64")
        local want = (per * w):mean():item()
        assert.is_true(math.abs(loss(logits, target, w):item() - want) < 1e-12)
        assert.is_true(math.abs(loss(logits, target, whorl.ones({ 4 })):item() -
            loss(logits, target):item()) < 1e-12)
        local cw = nn.losses.CrossEntropy{ class_weights = { 1, 1, 3, 1, 2 } }
        -- PyTorch: sum(w[t] * l) / sum(w[t]) = (l1 + 2 l2 + 3 l3 + 3 l4) / 9
        local p = per:totable()
        assert.is_true(math.abs(cw(logits, target):item() - (p[1] + 2 * p[2] + 3 * p[3] + 3 * p[4]) / 9) < 1e-12)
        local back = nn.losses.from_config(cjson.decode(cjson.encode(cw:config())))
        assert.are.equal(cw(logits, target):item(), back(logits, target):item())
    end)

    it("has the gradient of finite differences", function()
        local w = whorl.tensor({ 0.5, 2, 1, 1 }, "float64")
        local loss = nn.losses.CrossEntropy{ class_weights = { 1, 2, 1, 1, 0.5 } }
        assert.is_true(gradcheck(function(z) return loss(z, target, w) end, { logits },
            { name = "CrossEntropy" }))
    end)

    it("refuses class ids outside 1..K, fractional ids and bad shapes", function()
        local loss = nn.losses.CrossEntropy()
        raises(function() loss(logits, whorl.tensor({ 1, 6, 3, 3 })) end, "sample 2 has class id 6, outside 1..5")
        raises(function() loss(logits, whorl.tensor({ 0, 1, 3, 3 })) end, "sample 1 has class id 0")
        raises(function() loss(logits, whorl.tensor({ 1, 2.5, 3, 3 })) end, "sample 2 has class id 2.5")
        raises(function() loss(logits, whorl.tensor({ 1, 2 })) end, "one class id per sample (4)")
        raises(function() loss(logits:view(2, 10), target) end, "one class id per sample (2)")
        raises(function() nn.losses.CrossEntropy{ class_weights = { 1, 2 } }(logits, target) end,
            "2 class_weights for 5 classes")
        raises(function() nn.losses.CrossEntropy{ class_weights = { 1, -1 } } end, "class_weights[2]")
        raises(function() nn.losses.CrossEntropy{ smoothing = 0.1 } end, "unknown option 'smoothing'")
    end)
end)

describe("nn.GlobalAvgPool2d and nn.GlobalMaxPool2d", function()
    it("reduce each channel to its mean or maximum, with finite-difference gradients", function()
        whorl.manual_seed(4)
        local x = whorl.randn({ 2, 3, 4, 5 }, "float64")
        x.requires_grad = true
        local avg, mx = nn.GlobalAvgPool2d(), nn.GlobalMaxPool2d()
        assert.are.same({ 2, 3 }, avg(x):size())
        assert.are.equal(x[2][3]:mean():item(), avg(x)[2]:totable()[3])
        assert.are.equal(x[1][2]:max():item(), mx(x)[1]:totable()[2])
        assert.is_true(gradcheck(function(t) return avg(t) end, { x }, { name = "GlobalAvgPool2d" }))
        assert.is_true(gradcheck(function(t) return mx(t) end, { x }, { name = "GlobalMaxPool2d" }))
        raises(function() avg(whorl.ones({ 2, 3 })) end, "expected a 4-d input")
        raises(function() nn.GlobalAvgPool2d{ size = 2 } end, "unknown option 'size'")
        local copy = nn.from_config(cjson.decode(cjson.encode(nn.Sequential{ avg, nn.Flatten() }:config())))
        assert.are.equal("GlobalAvgPool2d", copy:get(1)._type)
        assert.are.equal(0, max_diff(copy(x), avg(x)))
        assert.are.equal("GlobalAveragePooling2D", avg._keras_type)
    end)
end)

-- A tiny labelled set: `per_class` prints of each class, 32x32.
local function tiny_set(per_class, finger0)
    local parts, labels = {}, {}
    for c, name in ipairs(whorl.synth.classes) do
        local images = whorl.synth.batch{ count = per_class, finger = finger0 + (c - 1) * per_class,
            class = name, size = 32, dpi = 250, seed = 11, info = false }
        parts[c] = images
        for _ = 1, per_class do labels[#labels + 1] = c end
    end
    return whorl.cat(parts, 1), labels
end

describe("models/classifier.lua", function()
    before_each(function() nn.clear_session() end)

    it("gives K logits per image and rebuilds from its config", function()
        local model = classifier{ input_size = 32, filters = { 4, 8 }, batch_norm = false, seed = 1 }
        model:eval()
        local x = whorl.rand({ 3, 1, 32, 32 })
        assert.are.same({ 3, 5 }, model(x):size())
        local copy = nn.from_config(cjson.decode(cjson.encode(model:config())))
        copy:load_state_dict(model:state_dict())
        copy:eval()
        assert.are.equal(0, max_diff(model(x), copy(x)))
        -- 1x4x9+4, 4x8x9+8, 8x5+5; batch norm adds a scale and a shift per channel
        assert.are.equal(40 + 296 + 45, model:count_params())
        assert.are.equal(40 + 296 + 45 + 2 * (4 + 8), classifier{ input_size = 32, filters = { 4, 8 } }:count_params())
        raises(function() classifier{ colours = 3 } end, "unknown option 'colours'")
        raises(function() classifier{ classes = 1 } end, "classes must be an integer >= 2")
        raises(function() classifier{ filters = {} } end, "filters must be a non-empty list")
    end)

    it("trains: the loss falls over a few epochs on a tiny set", function()
        local x, labels = tiny_set(4, 0)
        local model = classifier{ input_size = 32, filters = { 8, 16 }, dropout = 0, seed = 2 }
        local history = whorl.fit{ model = model, loss = nn.losses.CrossEntropy(),
            optimizer = optim.Adam(model, { lr = 0.01 }), train = { x = x, y = whorl.tensor(labels) },
            batch_size = 5, epochs = 10, seed = 3, verbose = 0 }
        assert.are.equal(10, #history.loss)
        assert.is_true(history.loss[10] < 0.85 * history.loss[1],
            ("loss %.3f -> %.3f"):format(history.loss[1], history.loss[10]))
    end)

    it("counts a confusion matrix that sums to the number of test images", function()
        local x, labels = tiny_set(2, 100)
        local model = classifier{ input_size = 32, filters = { 4, 8 }, seed = 5 }
        local pred = classifier.predict_classes(whorl.predict(model, x))
        local m = classifier.confusion(pred, labels, 5)
        local total, right = 0, 0
        for i = 1, 5 do
            local row = 0
            for j = 1, 5 do
                total, row = total + m[i][j], row + m[i][j]
                if i == j then right = right + m[i][j] end
            end
            assert.are.equal(2, row) -- two prints of each true class
        end
        assert.are.equal(#labels, total)
        assert.are.equal(right / total, classifier.accuracy(m))
        assert.are.same({ { 1, 1 }, { 0, 1 } }, classifier.confusion({ 1, 2, 2 }, { 1, 1, 2 }, 2))
        assert.are.equal(2 / 3, classifier.accuracy(classifier.confusion({ 1, 2, 2 }, { 1, 1, 2 }, 2)))
    end)

    it("refuses bad class labels and predictions", function()
        raises(function() classifier.confusion({ 1, 2 }, { 1, 6 }, 5) end, "sample 2 has label 6, outside 1..5")
        raises(function() classifier.confusion({ 0, 2 }, { 1, 2 }, 5) end, "sample 1 has prediction 0")
        raises(function() classifier.confusion({ 1, 2 }, { 1, "whorl" }, 5) end, "sample 2 has label whorl")
        raises(function() classifier.confusion({ 1 }, { 1, 2 }, 5) end, "two lists of one length")
        raises(function() classifier.predict_classes(whorl.ones({ 2, 3, 4 })) end, "expected logits (N, K)")
    end)
end)

describe("experiments/classify.lua", function()
    it("writes metrics.json and confusion.csv that agree, config.json, gradcam.png and report.html", function()
        local p = io.popen("mktemp -d")
        local dir = p:read("l")
        p:close()
        local cmd = ("lua5.4 experiments/classify.lua --size 32 --dpi 250 --fingers 10 --impressions 1 " ..
            "--valid-fingers 5 --test-fingers 12 --test-damage easy --epochs 1 --filters 4,8 --out '%s' 2>&1"):format(dir)
        p = io.popen(cmd)
        local out = p:read("a")
        local ok = p:close()
        assert.is_true(ok, out)
        assert.matches("accuracy", out)
        local metrics = cjson.decode(files.slurp(dir .. "/metrics.json"))
        assert.are.equal(12, metrics.test_images)
        assert.are.equal("easy", metrics.test_damage)
        local total, rows = 0, 0
        for line in io.lines(dir .. "/confusion.csv") do
            rows = rows + 1
            if rows > 1 then for v in line:gmatch(",(%d+)") do total = total + tonumber(v) end end
        end
        assert.are.equal(6, rows)
        assert.are.equal(12, total)
        assert.is_true(metrics.accuracy >= 0 and metrics.accuracy <= 1)
        assert.is_true(whorl.image.info(dir .. "/gradcam.png").width > 0)
        local config = cjson.decode(files.slurp(dir .. "/config.json"))
        assert.are.equal(32, config.size)
        assert.are.equal(250, config.dpi)
        assert.matches('src="gradcam.png"', files.slurp(dir .. "/report.html"), 1, true)
        assert.is_true(whorl.is_tensor((whorl.load(dir .. "/model.safetensors"))(whorl.rand({ 1, 1, 32, 32 }))))
        os.execute("rm -rf '" .. dir .. "'")
    end)
end)
