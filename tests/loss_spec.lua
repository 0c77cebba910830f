-- Losses: reference values (tests/fixtures/loss_reference.json, written by
-- make_nn_reference.py: PyTorch for MSE/L1/cross-entropy, explicit Keras
-- formulas for BCE and for weighted means), finite-difference gradient checks
-- for pred, target and weight maps, and the error messages.
local whorl = require "whorl"
local gradcheck = require "helpers.gradcheck"

local fixtures = require "helpers.fixtures"
local load_fixture, from_fixture, assert_close = fixtures.load, fixtures.tensor, fixtures.assert_close

-- Runs a fixture case.  Cross-entropy targets in the fixture are 0-based
-- (PyTorch's); with base 1 they are shifted to Torch7's 1-based ids, and so is
-- an ignore_index that names a class.
local function check_case(c, dtype, tol, base)
    local what = string.format("%s (%s, base %d)", c.name, dtype, base)
    local grad_names = {}
    for name in pairs(c.grads) do grad_names[#grad_names + 1] = name end
    table.sort(grad_names)
    local wants = {}
    for _, name in ipairs(grad_names) do wants[name] = true end
    local a, ins, y = c.args, {}, nil
    if c.op == "cross_entropy" then
        local ignore = a.ignore_index
        local lua_ignore = ignore == -100 and -100 or ignore + base
        ins.logits = from_fixture(c.inputs.logits, dtype, true)
        ins.target = from_fixture(c.inputs.target, dtype, false, function(v)
            return v == ignore and lua_ignore or v + base
        end)
        ins.weight = c.inputs.weight and from_fixture(c.inputs.weight, dtype)
        y = whorl.cross_entropy(ins.logits, ins.target, { weight = ins.weight,
            ignore_index = lua_ignore, reduction = a.reduction, base = base })
    else
        for name, e in pairs(c.inputs) do ins[name] = from_fixture(e, dtype, wants[name]) end
        y = whorl[c.op](ins.pred, ins.target, { weight = ins.weight, reduction = a.reduction })
    end
    assert_close(y, c.output, tol, what .. " output")
    local targets = {}
    for i, name in ipairs(grad_names) do targets[i] = ins[name] end
    local grads = whorl.grad(y, targets, { grad_outputs = from_fixture(c.grad_output, dtype) })
    for i, name in ipairs(grad_names) do
        assert_close(grads[i], c.grads[name], tol, what .. " gradient of " .. name)
    end
end

local function expect_error(pattern, f, ...)
    local ok, err = pcall(f, ...)
    assert(not ok, "expected an error matching '" .. pattern .. "'")
    assert(tostring(err):find(pattern, 1, true), "error '" .. tostring(err)
        .. "' does not contain '" .. pattern .. "'")
end

local function leaf(t)
    t = t:double()
    t.requires_grad = true
    return t
end

describe("losses against the references", function()
    local cases = load_fixture("loss_reference.json")

    it("has the reference cases", function()
        assert.is_true(#cases >= 25)
    end)

    for _, c in ipairs(cases) do
        it(c.name .. " (float64)", function() check_case(c, "float64", 1e-5, 1) end)
        if c.op == "cross_entropy" then
            it(c.name .. " (0-based ids)", function() check_case(c, "float64", 1e-5, 0) end)
        end
        -- float32 rounds 1 - 1e-9 to 1 and clips at 1 - 1e-7 in float32, so
        -- the clipped BCE cases have no float32 counterpart of the reference.
        if c.op ~= "bce_loss" then
            it(c.name .. " (float32)", function() check_case(c, "float32", 1e-4, 1) end)
        end
    end
end)

describe("pixel loss gradients", function()
    before_each(function() whorl.manual_seed(21) end)

    for _, op in ipairs({ "mse_loss", "l1_loss", "bce_loss" }) do
        -- BCE probabilities are kept away from the clip range, where the
        -- gradient is zero by definition and finite differences straddle it.
        local function pred()
            return op == "bce_loss" and leaf(whorl.rand(2, 1, 3, 4) * 0.8 + 0.1)
                or leaf(whorl.randn(2, 1, 3, 4))
        end
        local function target()
            return op == "bce_loss" and leaf(whorl.rand(2, 1, 3, 4)) or leaf(whorl.randn(2, 1, 3, 4))
        end

        it(op .. " for pred and target, every reduction", function()
            for _, r in ipairs({ "mean", "sum", "none" }) do
                gradcheck(function(p, t) return whorl[op](p, t, { reduction = r }) end,
                    { pred(), target() })
            end
        end)

        it(op .. " with a weight map, full and broadcast, for pred, target and weight", function()
            for _, r in ipairs({ "mean", "sum", "none" }) do
                gradcheck(function(p, t, w) return whorl[op](p, t, { weight = w, reduction = r }) end,
                    { pred(), target(), leaf(whorl.rand(2, 1, 3, 4) * 2) })
                gradcheck(function(p, t, w) return whorl[op](p, t, { weight = w, reduction = r }) end,
                    { pred(), target(), leaf(whorl.rand(1, 1, 3, 1) * 2) })
            end
        end)
    end

    it("bce passes no gradient where pred is clipped", function()
        local p = leaf(whorl.tensor({ 0, 1, -0.5, 1.5, 0.5 }))
        local t = whorl.tensor({ 1, 0, 1, 0, 1 }, "float64")
        local g = gradcheck.flat(whorl.grad(whorl.bce_loss(p, t, "sum"), { p })[1])
        assert.are.same({ 0, 0, 0, 0 }, { g[1], g[2], g[3], g[4] })
        assert.is_true(math.abs(g[5] + 2) < 1e-12)
        local l = whorl.bce_loss(p, t, "none")
        assert.is_true(math.abs(gradcheck.flat(l)[1] + math.log(1e-7)) < 1e-9)
    end)

    it("mean is the weighted sum over the number of elements", function()
        local p, t = whorl.randn(3, 4, "float64"), whorl.randn(3, 4, "float64")
        local w = whorl.rand(3, 4, "float64")
        local mean = whorl.mse_loss(p, t, { weight = w }):item()
        local sum = whorl.mse_loss(p, t, { weight = w, reduction = "sum" }):item()
        assert.is_true(math.abs(mean - sum / 12) < 1e-12)
    end)
end)

describe("large and strided inputs", function()
    before_each(function() whorl.manual_seed(23) end)

    it("agree with the same losses written with elementwise ops and reductions", function()
        local p, t = whorl.randn(4, 3, 64, 64, "float64"), whorl.randn(4, 3, 64, 64, "float64")
        local w = whorl.rand(1, 3, 1, 64, "float64")
        local d = p - t
        local ref = (w * d * d):sum():item() / p:numel()
        assert.is_true(math.abs(whorl.mse_loss(p, t, { weight = w }):item() - ref) < 1e-12)
        -- A transposed (non-contiguous) pred and target give the same losses.
        local pt, tt = p:transpose(3, 4), t:transpose(3, 4)
        local a = whorl.l1_loss(pt, tt, "none")
        local b = whorl.l1_loss(pt:contiguous(), tt:contiguous(), "none")
        assert.are.same(gradcheck.flat(a), gradcheck.flat(b))
    end)

    it("cross_entropy matches -log_softmax at the target, on a large map", function()
        local z = whorl.randn(2, 5, 64, 64, "float64")
        local tv = {}
        for i = 1, 2 * 64 * 64 do tv[i] = (i * 7) % 5 end
        local t = whorl.tensor(tv):view(2, 64, 64)
        local l = gradcheck.flat(whorl.cross_entropy(z, t, { base = 0, reduction = "none" }))
        local ls = z:log_softmax(2)
        for _, i in ipairs({ 1, 77, 4096, 8192 }) do
            local n, rest = (i - 1) // 4096, (i - 1) % 4096
            local h, w = rest // 64, rest % 64
            local ref = -ls:get(n + 1, tv[i] + 1, h + 1, w + 1)
            assert.is_true(math.abs(l[i] - ref) < 1e-12)
        end
    end)
end)

describe("cross_entropy gradients", function()
    before_each(function() whorl.manual_seed(22) end)

    it("for logits (N,C) and (N,C,H,W), weighted, with ignored elements", function()
        local t2 = whorl.tensor({ 1, 3, 2, 2, 4 })
        for _, r in ipairs({ "mean", "sum", "none" }) do
            gradcheck(function(z) return whorl.cross_entropy(z, t2, { reduction = r }) end,
                { leaf(whorl.randn(5, 4)) })
            gradcheck(function(z)
                return whorl.cross_entropy(z, t2, { reduction = r,
                    weight = whorl.tensor({ 0.5, 2, 1, 1.5 }, "float64") })
            end, { leaf(whorl.randn(5, 4)) })
        end
        -- A uint8 label image with 0 as the ignored "unlabelled" value.
        local t4 = whorl.tensor({ { { 1, 0, 3 }, { 2, 2, 1 } }, { { 3, 3, 0 }, { 1, 2, 3 } } },
            "uint8")
        gradcheck(function(z)
            return whorl.cross_entropy(z, t4, { ignore_index = 0,
                weight = whorl.tensor({ 1, 2, 0.5 }, "float64") })
        end, { leaf(whorl.randn(2, 3, 2, 3)) })
    end)

    it("ignores every element: mean is NaN as in PyTorch, sum is 0", function()
        local z = whorl.randn(2, 3)
        local t = whorl.tensor({ -100, -100 })
        local m = whorl.cross_entropy(z, t):item()
        assert.is_true(m ~= m)
        assert.are.equal(0, whorl.cross_entropy(z, t, "sum"):item())
    end)
end)

describe("loss errors", function()
    it("refuse pred and target of different shapes, naming both", function()
        local p = whorl.randn(2, 1, 4, 4)
        expect_error("mse_loss: pred of shape [2, 1, 4, 4] and target of shape [2, 4, 4] differ",
            whorl.mse_loss, p, whorl.randn(2, 4, 4))
        expect_error("l1_loss: pred of shape [2, 1, 4, 4] and target of shape [1, 1, 4, 4] differ",
            whorl.l1_loss, p, whorl.randn(1, 1, 4, 4))
        expect_error("bce_loss: pred of shape [2, 1, 4, 4] and target of shape [2, 1, 4, 5]",
            whorl.binary_cross_entropy, p, whorl.rand(2, 1, 4, 5))
    end)

    it("refuse a weight that does not broadcast to pred, and bad options", function()
        local p, t = whorl.randn(2, 3), whorl.randn(2, 3)
        expect_error("mse_loss: weight of shape [3, 2] cannot be broadcast to pred's shape [2, 3]",
            whorl.mse_loss, p, t, { weight = whorl.ones(3, 2) })
        expect_error("mse_loss: weight of shape [1, 2, 3] cannot be broadcast to pred's shape",
            whorl.mse_loss, p, t, { weight = whorl.ones(1, 2, 3) })
        expect_error("l1_loss: unknown reduction 'avg' (mean, sum or none)", whorl.l1_loss, p, t,
            { reduction = "avg" })
        expect_error("mse_loss: unknown option 'weights'", whorl.mse_loss, p, t,
            { weights = whorl.ones(2, 3) })
        expect_error("mse_loss: option 'weight' must be a tensor", whorl.mse_loss, p, t,
            { weight = 2 })
        expect_error("mse_loss: dtypes differ (float32 and float64)", whorl.mse_loss, p,
            t:double())
    end)

    it("name a bad class id in the user's 1-based convention", function()
        local z = whorl.randn(3, 4)
        expect_error("cross_entropy: target value 5 at [2] is not a class id in [1, 4]",
            whorl.cross_entropy, z, whorl.tensor({ 1, 5, 2 }))
        expect_error("cross_entropy: target value 0 at [3] is not a class id in [1, 4]",
            whorl.cross_entropy, z, whorl.tensor({ 1, 2, 0 }))
        expect_error("cross_entropy: target value 4 at [1] is not a class id in [0, 3]",
            whorl.cross_entropy, z, whorl.tensor({ 4, 1, 1 }), { base = 0 })
        expect_error("cross_entropy: target value 1.5 at [1] is not a class id",
            whorl.cross_entropy, z, whorl.tensor({ 1.5, 1, 1 }))
        expect_error("cross_entropy: target value 7 at [2, 1, 2] is not a class id in [1, 4]",
            whorl.cross_entropy, whorl.randn(2, 4, 2, 2),
            whorl.tensor({ { { 1, 1 }, { 1, 1 } }, { { 1, 7 }, { 1, 1 } } }))
    end)

    it("refuse targets and class weights of the wrong shape", function()
        expect_error("cross_entropy: target of shape [2, 3] does not fit logits of shape "
            .. "[2, 4, 3, 3]", whorl.cross_entropy, whorl.randn(2, 4, 3, 3), whorl.ones(2, 3))
        expect_error("cross_entropy: target of shape [4] does not fit logits of shape [3, 5]",
            whorl.cross_entropy, whorl.randn(3, 5), whorl.ones(4))
        expect_error("cross_entropy: class weight must have shape [5] (one per class of logits "
            .. "[3, 5]), got [4]", whorl.cross_entropy, whorl.randn(3, 5), whorl.ones(3),
            { weight = whorl.ones(4) })
        expect_error("cross_entropy: logits must be (N,C) or (N,C,H,W), got shape [5]",
            whorl.cross_entropy, whorl.randn(5), whorl.ones(5))
        expect_error("cross_entropy: base must be 0 or 1", whorl.cross_entropy, whorl.randn(3, 5),
            whorl.ones(3), { base = 2 })
    end)
end)
