-- conv2d and conv_transpose2d: gradients by finite differences (float64)
-- for input, weight and bias over strides, paddings, dilations and fused
-- activations; agreement of float32 with float64; argument errors.
-- (The kernels themselves are compared with a direct reference in
-- tests/c/test_conv2d.c.)
local whorl = require "whorl"
local gradcheck = require "helpers.gradcheck"

local function leaf(t)
    t.requires_grad = true
    return t
end

local function randd(...)
    return whorl.randn({...}, "float64")
end

describe("conv2d", function()
    local cases = {
        {name = "3x3 same", x = {2, 3, 6, 5}, w = {4, 3, 3, 3}, opts = {padding = 1}},
        {name = "stride 2, pad 1", x = {1, 2, 7, 6}, w = {3, 2, 3, 3}, opts = {stride = 2, padding = 1}},
        {name = "dilation 2", x = {1, 2, 8, 8}, w = {2, 2, 3, 3}, opts = {dilation = 2, padding = 2}},
        {name = "rectangular kernel and stride", x = {2, 2, 7, 9}, w = {3, 2, 2, 3},
         opts = {stride = {1, 2}, padding = {0, 1}}},
        {name = "one input channel (direct path)", x = {3, 1, 6, 6}, w = {4, 1, 3, 3}, opts = {padding = 1}},
        {name = "one output channel (direct path)", x = {2, 5, 6, 6}, w = {1, 5, 3, 3}, opts = {padding = 1}},
        {name = "1x1", x = {2, 4, 3, 3}, w = {3, 4, 1, 1}, opts = {}},
        {name = "fused relu", x = {2, 3, 5, 5}, w = {4, 3, 3, 3}, opts = {padding = 1, activation = "relu"}},
        {name = "fused sigmoid", x = {2, 3, 5, 5}, w = {1, 3, 3, 3}, opts = {padding = 1, activation = "sigmoid"}},
    }
    for _, c in ipairs(cases) do
        it("has correct gradients: " .. c.name, function()
            whorl.manual_seed(3)
            local x = leaf(randd(table.unpack(c.x)))
            local w = leaf(randd(table.unpack(c.w)))
            local b = leaf(randd(c.w[1]))
            assert.is_true(gradcheck(function(x_, w_, b_)
                return whorl.conv2d(x_, w_, b_, c.opts)
            end, {x, w, b}, {name = "conv2d " .. c.name}))
        end)
    end

    it("works without a bias and matches in float32", function()
        whorl.manual_seed(5)
        local x, w = randd(2, 3, 9, 8), randd(5, 3, 3, 3)
        local y64 = whorl.conv2d(x, w, nil, {padding = 1, activation = "relu"})
        local y32 = whorl.conv2d(x:float(), w:float(), nil, {padding = 1, activation = "relu"})
        assert.are.same({2, 5, 9, 8}, y64:size())
        local diff = (y64 - y32:double()):abs():max():item()
        assert.is_true(diff < 1e-4, "float32 differs from float64 by " .. diff)
    end)

    it("fused activations equal the separate ops", function()
        whorl.manual_seed(6)
        local x, w, b = randd(2, 3, 6, 6), randd(4, 3, 3, 3), randd(4)
        local plain = whorl.conv2d(x, w, b, {padding = 1})
        local relu = whorl.conv2d(x, w, b, {padding = 1, activation = "relu"})
        local sig = whorl.conv2d(x, w, b, {padding = 1, activation = "sigmoid"})
        assert.is_true((relu - whorl.relu(plain)):abs():max():item() < 1e-12)
        assert.is_true((sig - whorl.sigmoid(plain)):abs():max():item() < 1e-12)
    end)

    it("padding 'same' keeps the size for odd kernels and refuses even ones", function()
        local x = whorl.zeros(1, 2, 7, 5)
        assert.are.same({1, 3, 7, 5}, whorl.conv2d(x, whorl.zeros(3, 2, 5, 3), nil, {padding = "same"}):size())
        assert.has_error(function()
            whorl.conv2d(x, whorl.zeros(3, 2, 2, 2), nil, {padding = "same"})
        end)
    end)

    it("names the shapes when channels disagree", function()
        local ok, err = pcall(whorl.conv2d, whorl.zeros(1, 3, 8, 8), whorl.zeros(4, 2, 3, 3))
        assert.is_false(ok)
        assert.truthy(err:find("conv2d: input has 3 channels", 1, true), err)
        assert.truthy(err:find("[4, 2, 3, 3]", 1, true), err)
    end)

    it("rejects a kernel larger than the padded input, bad bias and wrong ranks", function()
        local ok, err = pcall(whorl.conv2d, whorl.zeros(1, 1, 2, 2), whorl.zeros(1, 1, 5, 5))
        assert.is_false(ok)
        assert.truthy(err:find("conv2d", 1, true), err)
        ok, err = pcall(whorl.conv2d, whorl.zeros(1, 2, 4, 4), whorl.zeros(3, 2, 3, 3), whorl.zeros(2))
        assert.is_false(ok)
        assert.truthy(err:find("bias must have shape [3]", 1, true), err)
        ok, err = pcall(whorl.conv2d, whorl.zeros(2, 4, 4), whorl.zeros(3, 2, 3, 3))
        assert.is_false(ok)
        assert.truthy(err:find("input must be 4-d", 1, true), err)
        ok, err = pcall(whorl.conv2d, whorl.zeros(1, 2, 4, 4), whorl.zeros(3, 2, 3, 3, "float64"))
        assert.is_false(ok)
        assert.truthy(err:find("dtypes differ", 1, true), err)
        assert.has_error(function()
            whorl.conv2d(whorl.zeros(1, 2, 4, 4), whorl.zeros(3, 2, 3, 3), nil, {stride = 0})
        end)
        assert.has_error(function()
            whorl.conv2d(whorl.zeros(1, 2, 4, 4), whorl.zeros(3, 2, 3, 3), nil, {activation = "gelu"})
        end)
    end)
end)

describe("conv_transpose2d", function()
    local cases = {
        {name = "stride 2", x = {2, 3, 4, 4}, w = {3, 2, 3, 3}, opts = {stride = 2, padding = 1}},
        {name = "stride 2, output padding 1", x = {1, 2, 3, 4}, w = {2, 3, 3, 3},
         opts = {stride = 2, padding = 1, output_padding = 1}},
        {name = "2x2 kernel stride 2 (U-Net up-convolution)", x = {2, 4, 3, 3}, w = {4, 2, 2, 2}, opts = {stride = 2}},
        {name = "dilation 2", x = {1, 2, 4, 4}, w = {2, 2, 3, 3}, opts = {dilation = 2}},
        {name = "fused sigmoid", x = {1, 2, 3, 3}, w = {2, 1, 3, 3}, opts = {stride = 2, activation = "sigmoid"}},
    }
    for _, c in ipairs(cases) do
        it("has correct gradients: " .. c.name, function()
            whorl.manual_seed(4)
            local x = leaf(randd(table.unpack(c.x)))
            local w = leaf(randd(table.unpack(c.w)))
            local b = leaf(randd(c.w[2]))
            assert.is_true(gradcheck(function(x_, w_, b_)
                return whorl.conv_transpose2d(x_, w_, b_, c.opts)
            end, {x, w, b}, {name = "conv_transpose2d " .. c.name}))
        end)
    end

    it("has PyTorch's output size and is the adjoint of conv2d", function()
        whorl.manual_seed(8)
        local x, w = randd(2, 3, 5, 4), randd(3, 2, 3, 3)
        local y = whorl.conv_transpose2d(x, w, nil, {stride = 2, padding = 1, output_padding = 1})
        -- (5-1)*2 - 2 + 2 + 1 + 1 = 10, (4-1)*2 - 2 + 2 + 1 + 1 = 8
        assert.are.same({2, 2, 10, 8}, y:size())
        -- <conv_transpose(x), z> == <x, conv(z)> for the same weight
        local z = randd(2, 2, 10, 8)
        local lhs = (y * z):sum():item()
        local rhs = (x * whorl.conv2d(z, w, nil, {stride = 2, padding = 1})):sum():item()
        assert.is_true(math.abs(lhs - rhs) < 1e-9 * math.max(1, math.abs(lhs)))
    end)

    it("rejects an output padding not smaller than stride or dilation", function()
        local ok, err = pcall(whorl.conv_transpose2d, whorl.zeros(1, 2, 3, 3), whorl.zeros(2, 2, 3, 3),
            nil, {stride = 1, output_padding = 1})
        assert.is_false(ok)
        assert.truthy(err:find("output", 1, true), err)
    end)
end)
