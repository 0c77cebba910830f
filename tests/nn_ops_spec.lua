-- Pooling, upsampling, batch norm and dropout: PyTorch reference values
-- (tests/fixtures/nn_reference.json, written by make_nn_reference.py),
-- finite-difference gradient checks, and the error messages.
local whorl = require "whorl"
local gradcheck = require "helpers.gradcheck"

local fixtures = require "helpers.fixtures"
local load_fixture, from_fixture, assert_close = fixtures.load, fixtures.tensor, fixtures.assert_close

local function run_case(c, dtype)
    local grad_names = {}
    for name in pairs(c.grads) do grad_names[#grad_names + 1] = name end
    table.sort(grad_names)
    local wants = {}
    for _, name in ipairs(grad_names) do wants[name] = true end
    local ins = {}
    for name, e in pairs(c.inputs) do ins[name] = from_fixture(e, dtype, wants[name]) end
    local a, y = c.args, nil
    if c.op == "max_pool2d" or c.op == "avg_pool2d" then
        y = whorl[c.op](ins.x, { kernel = a.kernel, stride = a.stride, padding = a.padding,
            ceil_mode = a.ceil_mode, count_include_pad = a.count_include_pad })
    elseif c.op == "upsample" then
        y = whorl.upsample(ins.x, { size = a.size, scale = a.scale, mode = a.mode,
            align_corners = a.align_corners })
    elseif c.op == "batch_norm" then
        y = whorl.batch_norm(ins.x, ins.weight, ins.bias, ins.running_mean, ins.running_var,
            { training = a.training, momentum = a.momentum, eps = a.eps })
    else
        error("unknown op in fixture: " .. c.op)
    end
    return y, ins, grad_names
end

local function check_case(c, dtype, tol)
    local what = string.format("%s (%s)", c.name, dtype)
    local y, ins, grad_names = run_case(c, dtype)
    assert_close(y, c.output, tol, what .. " output")
    local targets = {}
    for i, name in ipairs(grad_names) do targets[i] = ins[name] end
    local g = from_fixture(c.grad_output, dtype)
    local grads = whorl.grad(y, targets, { grad_outputs = g })
    for i, name in ipairs(grad_names) do
        assert_close(grads[i], c.grads[name], tol, what .. " gradient of " .. name)
    end
    if c.after then
        for name, e in pairs(c.after) do
            assert_close(ins[name], e, tol, what .. " " .. name .. " after the step")
        end
    end
end

local function expect_error(pattern, f, ...)
    local ok, err = pcall(f, ...)
    assert(not ok, "expected an error matching '" .. pattern .. "'")
    assert(tostring(err):find(pattern, 1, true), "error '" .. tostring(err)
        .. "' does not contain '" .. pattern .. "'")
end

local function randn64(...)
    local t = whorl.randn(...)
    return t:double()
end

local function leaf(...)
    local t = randn64(...)
    t.requires_grad = true
    return t
end

describe("nn ops against PyTorch", function()
    local cases = load_fixture("nn_reference.json")

    it("has the reference cases", function()
        assert.is_true(#cases >= 20)
    end)

    for _, c in ipairs(cases) do
        it(c.name .. " (float64)", function() check_case(c, "float64", 1e-5) end)
        it(c.name .. " (float32)", function() check_case(c, "float32", 1e-4) end)
    end
end)

describe("pooling", function()
    before_each(function() whorl.manual_seed(11) end)

    it("accepts the positional and the options forms alike", function()
        local x = randn64(2, 3, 7, 9)
        local a = whorl.max_pool2d(x, 2)
        local b = x:max_pool2d({ kernel = 2, stride = 2 })
        local c = whorl.max_pool2d(x, { 2, 2 }, 2, 0, false)
        assert.are.same({ 2, 3, 3, 4 }, a:size())
        assert.are.same(gradcheck.flat(a), gradcheck.flat(b))
        assert.are.same(gradcheck.flat(a), gradcheck.flat(c))
        local d = whorl.avg_pool2d(x, 3, 2, 1, true, false)
        local e = x:avg_pool2d({ kernel = 3, stride = 2, padding = 1, ceil_mode = true,
            count_include_pad = false })
        assert.are.same(gradcheck.flat(d), gradcheck.flat(e))
        assert.are.same({ 2, 3, 4, 5 }, d:size())
    end)

    it("max_pool2d gradient: fast path, overlapping windows, padding, ceil_mode", function()
        gradcheck(function(x) return whorl.max_pool2d(x, 2) end, { leaf(2, 2, 6, 8) })
        gradcheck(function(x) return whorl.max_pool2d(x, 2) end, { leaf(1, 2, 5, 7) })
        gradcheck(function(x)
            return whorl.max_pool2d(x, { kernel = 3, stride = 2, padding = 1, ceil_mode = true })
        end, { leaf(2, 2, 6, 7) })
        gradcheck(function(x)
            return whorl.max_pool2d(x, { kernel = { 3, 2 }, stride = 1, padding = { 1, 0 } })
        end, { leaf(1, 2, 5, 4) })
    end)

    it("avg_pool2d gradient with and without counting the padding", function()
        for _, incl in ipairs({ true, false }) do
            gradcheck(function(x)
                return whorl.avg_pool2d(x, { kernel = 3, stride = 2, padding = 1,
                    ceil_mode = true, count_include_pad = incl })
            end, { leaf(2, 2, 6, 7) })
        end
        gradcheck(function(x) return whorl.avg_pool2d(x, { kernel = { 2, 3 }, stride = 1 }) end,
            { leaf(1, 3, 4, 5) })
    end)

    it("propagates NaN through max_pool2d", function()
        local x = whorl.zeros(1, 1, 2, 2)
        x:set(1, 1, 2, 1, 0 / 0)
        local y = whorl.max_pool2d(x, 2):item()
        assert.is_true(y ~= y)
    end)

    it("reports bad arguments", function()
        local x = randn64(1, 2, 5, 5)
        expect_error("max_pool2d: input must be 4-d (N,C,H,W), got shape [2, 5, 5]",
            whorl.max_pool2d, randn64(2, 5, 5), 2)
        expect_error("max_pool2d: padding (2, 2) must be at most half the kernel size (3, 3)",
            whorl.max_pool2d, x, { kernel = 3, padding = 2 })
        expect_error("avg_pool2d: input of shape [1, 2, 5, 5] is too small for kernel (7, 7)",
            whorl.avg_pool2d, x, 7)
        expect_error("max_pool2d: kernel (0, 0) and stride (0, 0) must be positive",
            whorl.max_pool2d, x, 0)
        expect_error("max_pool2d: the kernel size is required", whorl.max_pool2d, x,
            { stride = 2 })
        expect_error("max_pool2d: unknown option 'kernal'", whorl.max_pool2d, x, { kernal = 2 })
        expect_error("avg_pool2d: ceil_mode must be a boolean", whorl.avg_pool2d, x, 2, 2, 0, 1)
        expect_error("max_pool2d: input must be float32 or float64, got uint8",
            whorl.max_pool2d, whorl.zeros(1, 1, 4, 4, "uint8"), 2)
    end)
end)

describe("upsample", function()
    before_each(function() whorl.manual_seed(12) end)

    it("scale 2 nearest is Keras' UpSampling2D((2, 2))", function()
        local x = whorl.tensor({ { { { 1, 2 }, { 3, 4 } } } })
        local y = whorl.upsample(x, 2)
        assert.are.same({ 1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4 }, gradcheck.flat(y))
        assert.are.same(gradcheck.flat(y), gradcheck.flat(x:upsample({ size = { 4, 4 } })))
    end)

    it("takes a per-dimension scale and a mode", function()
        local x = randn64(1, 2, 3, 5)
        assert.are.same({ 1, 2, 6, 5 }, whorl.upsample(x, { scale = { 2, 1 } }):size())
        assert.are.same({ 1, 2, 4, 7 }, whorl.upsample(x, { scale = 1.5, mode = "bilinear" }):size())
        local a = whorl.upsample(x, 2, "bilinear")
        local b = whorl.upsample(x, { size = { 6, 10 }, mode = "bilinear" })
        assert.are.same(gradcheck.flat(a), gradcheck.flat(b))
    end)

    it("gradients of both modes, up and down, align_corners both ways", function()
        for _, size in ipairs({ { 8, 11 }, { 3, 4 }, { 10, 14 } }) do
            gradcheck(function(x) return whorl.upsample(x, { size = size }) end,
                { leaf(2, 2, 5, 7) })
            for _, ac in ipairs({ false, true }) do
                gradcheck(function(x)
                    return whorl.upsample(x, { size = size, mode = "bilinear", align_corners = ac })
                end, { leaf(2, 2, 5, 7) })
            end
        end
    end)

    it("reports bad arguments", function()
        local x = randn64(1, 1, 3, 3)
        expect_error("upsample: give exactly one of scale and size", whorl.upsample, x,
            { scale = 2, size = { 6, 6 } })
        expect_error("upsample: give exactly one of scale and size", whorl.upsample, x, {})
        expect_error("upsample: unknown mode 'bicubic'", whorl.upsample, x,
            { scale = 2, mode = "bicubic" })
        expect_error("upsample_nearest2d: align_corners only applies to bilinear mode",
            whorl.upsample, x, { scale = 2, align_corners = true })
        expect_error("upsample: scale must be a positive number", whorl.upsample, x, -2)
        expect_error("upsample_bilinear2d: output size 0x6 must be positive", whorl.upsample, x,
            { size = { 0, 6 }, mode = "bilinear" })
        expect_error("upsample: input must be 4-d (N,C,H,W), got shape [3, 3]", whorl.upsample,
            randn64(3, 3), 2)
    end)
end)

describe("large and strided inputs (the threaded loops)", function()
    before_each(function() whorl.manual_seed(14) end)

    local function max_abs_diff(a, b)
        local va, vb, worst = gradcheck.flat(a), gradcheck.flat(b), 0
        assert.are.equal(#va, #vb)
        for i = 1, #va do worst = math.max(worst, math.abs(va[i] - vb[i])) end
        return worst
    end

    -- 2x2 pooling is a reduction over the window dims of a 6-d view, so the
    -- reductions give an independent answer for the fast path.
    it("2x2 pooling equals max and mean over the window dims, gradients included", function()
        local x = randn64(2, 8, 64, 48)
        x.requires_grad = true
        local function windows() return x:view(2, 8, 32, 2, 24, 2) end
        local g = randn64(2, 8, 32, 24)
        local a, b = whorl.max_pool2d(x, 2), windows():max({ 4, 6 })
        assert.are.equal(0, max_abs_diff(a, b))
        local ga = whorl.grad(a, { x }, { grad_outputs = g })[1]
        local gb = whorl.grad(b, { x }, { grad_outputs = g })[1]
        assert.are.equal(0, max_abs_diff(ga, gb))
        local c, d = whorl.avg_pool2d(x, 2), windows():mean({ 4, 6 })
        assert.is_true(max_abs_diff(c, d) < 1e-14)
        local gc = whorl.grad(c, { x }, { grad_outputs = g })[1]
        local gd = whorl.grad(d, { x }, { grad_outputs = g })[1]
        assert.is_true(max_abs_diff(gc, gd) < 1e-14)
    end)

    it("nearest scale 2 equals expanding each pixel to a 2x2 block", function()
        local x = whorl.randn(2, 8, 40, 56)
        local y = whorl.upsample(x, 2)
        local e = x:view(2, 8, 40, 1, 56, 1):expand(2, 8, 40, 2, 56, 2):reshape(2, 8, 80, 112)
        assert.are.equal(0, max_abs_diff(y, e))
        -- The generic table path (a size that is not twice the input) agrees on
        -- the pixels both paths share.
        local z = whorl.upsample(x, { size = { 80, 113 } })
        assert.are.equal(0, max_abs_diff(z:narrow(4, 1, 2), y:narrow(4, 1, 2)))
    end)

    it("gives the same on a non-contiguous view as on its contiguous copy", function()
        local x = randn64(2, 3, 40, 36):transpose(3, 4)
        assert.is_false(x:is_contiguous())
        local xc = x:contiguous()
        local opts = { kernel = 3, stride = 2, padding = 1, ceil_mode = true }
        assert.are.equal(0, max_abs_diff(whorl.max_pool2d(x, opts), whorl.max_pool2d(xc, opts)))
        assert.are.equal(0, max_abs_diff(whorl.avg_pool2d(x, opts), whorl.avg_pool2d(xc, opts)))
        local up = { size = { 50, 61 }, mode = "bilinear" }
        assert.are.equal(0, max_abs_diff(whorl.upsample(x, up), whorl.upsample(xc, up)))
        assert.are.equal(0, max_abs_diff(whorl.batch_norm(x, nil, nil, nil, nil),
            whorl.batch_norm(xc, nil, nil, nil, nil)))
    end)

    it("batch norm of a large float32 batch with a large mean has zero mean, unit variance", function()
        local x = whorl.randn(16, 4, 32, 32) * 3 + 1000
        local y = whorl.batch_norm(x, nil, nil, nil, nil)
        local m = gradcheck.flat(y:mean({ 1, 3, 4 }))
        local v = gradcheck.flat((y * y):mean({ 1, 3, 4 }))
        for c = 1, 4 do
            assert.is_true(math.abs(m[c]) < 1e-3)
            assert.is_true(math.abs(v[c] - 1) < 1e-3)
        end
    end)
end)

describe("batch_norm", function()
    before_each(function() whorl.manual_seed(13) end)

    local function stats(C)
        return whorl.zeros(C, "float64"), whorl.ones(C, "float64")
    end

    it("gradients in training through the batch statistics, for x, weight and bias", function()
        local rm, rv = stats(3)
        gradcheck(function(x, w, b)
            return whorl.batch_norm(x, w, b, rm, rv, { training = true })
        end, { leaf(3, 3, 2, 4), leaf(3), leaf(3) })
        gradcheck(function(x, w, b) return whorl.batch_norm(x, w, b, nil, nil) end,
            { leaf(5, 4), leaf(4), leaf(4) })
        gradcheck(function(x) return whorl.batch_norm(x, nil, nil, nil, nil) end,
            { leaf(2, 3, 3, 3) })
    end)

    it("gradients in evaluation mode, for x, weight and bias", function()
        local rm, rv = randn64(3), whorl.rand(3, "float64") + 0.5
        gradcheck(function(x, w, b)
            return whorl.batch_norm(x, w, b, rm, rv, { training = false })
        end, { leaf(3, 3, 2, 4), leaf(3), leaf(3) })
    end)

    it("normalises per channel in training and leaves the running stats alone in eval", function()
        local x = randn64(8, 2, 4, 4) * 3 + 5
        local rm, rv = stats(2)
        local y = whorl.batch_norm(x, nil, nil, rm, rv, { training = true, momentum = 1 })
        local m = y:mean({ 1, 3, 4 })
        for _, v in ipairs(gradcheck.flat(m)) do assert.is_true(math.abs(v) < 1e-12) end
        -- momentum 1: the running mean is the batch mean.
        local bm = gradcheck.flat(x:mean({ 1, 3, 4 }))
        local r = gradcheck.flat(rm)
        for c = 1, 2 do assert.is_true(math.abs(r[c] - bm[c]) < 1e-12) end
        local before = gradcheck.flat(rv)
        whorl.batch_norm(x, nil, nil, rm, rv, { training = false })
        assert.are.same(before, gradcheck.flat(rv))
    end)

    it("reports bad arguments", function()
        local x = randn64(4, 3, 2, 2)
        local rm, rv = stats(3)
        expect_error("batch_norm: weight must have shape [3] (one per channel of input "
            .. "[4, 3, 2, 2]), got [4]", whorl.batch_norm, x, randn64(4))
        expect_error("batch_norm: evaluation mode needs running_mean and running_var",
            whorl.batch_norm, x, nil, nil, nil, nil, { training = false })
        expect_error("batch_norm: training needs more than one value per channel",
            whorl.batch_norm, randn64(1, 3), nil, nil, nil, nil)
        expect_error("batch_norm: input must be 2-d (N,C) or 4-d (N,C,H,W), got shape [4, 3, 2]",
            whorl.batch_norm, randn64(4, 3, 2), nil, nil, rm, rv)
        expect_error("batch_norm: running_mean is float32 but input is float64",
            whorl.batch_norm, x, nil, nil, whorl.zeros(3), rv)
        expect_error("batch_norm: unknown option 'train'", whorl.batch_norm, x, nil, nil, rm, rv,
            { train = false })
    end)
end)

describe("dropout", function()
    it("gradient equals the mask / (1 - p), and y = x * that", function()
        whorl.manual_seed(5)
        local x = leaf(4, 50)
        local p = 0.3
        local y = whorl.dropout(x, p)
        local g = whorl.grad(y, { x }, { grad_outputs = whorl.ones(4, 50, "float64") })[1]
        local gv, xv, yv = gradcheck.flat(g), gradcheck.flat(x), gradcheck.flat(y)
        local kept = 0
        for i = 1, #gv do
            assert.is_true(gv[i] == 0 or math.abs(gv[i] - 1 / (1 - p)) < 1e-12)
            assert.is_true(math.abs(yv[i] - xv[i] * gv[i]) < 1e-12)
            if gv[i] ~= 0 then kept = kept + 1 end
        end
        assert.is_true(kept > 0 and kept < #gv)
        -- The same mask on every call once reseeded, so finite differences apply.
        gradcheck(function(t)
            whorl.manual_seed(9)
            return whorl.dropout(t, 0.4)
        end, { leaf(3, 7) })
    end)

    it("is reproducible with the same seed and keeps about 1 - p of the elements", function()
        local x = whorl.ones(100, 100)
        whorl.manual_seed(42)
        local a = gradcheck.flat(whorl.dropout(x, 0.25))
        whorl.manual_seed(42)
        local b = gradcheck.flat(x:dropout(0.25, true))
        assert.are.same(a, b)
        local c = gradcheck.flat(whorl.dropout(x, 0.25))
        assert.are_not.same(a, c)
        local kept = 0
        for i = 1, #a do if a[i] ~= 0 then kept = kept + 1 end end
        assert.is_true(math.abs(kept / #a - 0.75) < 0.03)
    end)

    it("is the identity when not training or p == 0", function()
        whorl.manual_seed(1)
        local x = leaf(3, 4)
        local state = whorl.get_rng_state()
        assert.are.same(gradcheck.flat(x), gradcheck.flat(whorl.dropout(x, 0.5, false)))
        assert.are.same(gradcheck.flat(x), gradcheck.flat(whorl.dropout(x, 0)))
        assert.are.equal(state, whorl.get_rng_state())
        local g = whorl.grad(whorl.dropout(x, 0.5, false), { x },
            { grad_outputs = whorl.ones(3, 4, "float64") })[1]
        for _, v in ipairs(gradcheck.flat(g)) do assert.are.equal(1, v) end
    end)

    it("refuses p outside [0, 1)", function()
        local x = whorl.ones(2, 2)
        expect_error("dropout: probability p must be in [0, 1), got 1", whorl.dropout, x, 1)
        expect_error("dropout: probability p must be in [0, 1), got -0.1", whorl.dropout, x, -0.1)
        expect_error("dropout: probability p must be in [0, 1), got 1.5", whorl.dropout, x, 1.5,
            false)
    end)
end)
