-- Elementwise ops from Lua: values, broadcasting, gradients, in-place updates.
local whorl = require "whorl"
local gradcheck = require "helpers.gradcheck"
local check = require "helpers.check"
local raises = check.raises

local function assert_close(expected, t, tol)
    local got = gradcheck.flat(t)
    local want = {}
    local function walk(v)
        if type(v) == "table" then for _, x in ipairs(v) do walk(x) end
        else want[#want + 1] = v end
    end
    walk(expected)
    assert.equal(#want, #got)
    for i = 1, #want do
        assert.is_true(math.abs(want[i] - got[i]) <= (tol or 1e-6) * math.max(1, math.abs(want[i])),
            string.format("element %d: expected %.10g, got %.10g", i, want[i], got[i]))
    end
end

-- A float64 leaf whose values are map(u) for u uniform on [0, 1): gradcheck
-- inputs placed away from kinks (0 for relu/abs, the clamp bounds...).
local function input(sizes, map)
    local u = gradcheck.flat(whorl.rand(sizes, "double"))
    for i = 1, #u do u[i] = map(u[i]) end
    local t = whorl.from_bytes(string.pack(string.rep("<d", #u), table.unpack(u)), "double", sizes)
    t.requires_grad = true
    return t
end
local function signed(u) -- in (-1, -0.2] U [0.2, 1)
    return u < 0.5 and -(0.2 + 1.6 * u) or 0.2 + 1.6 * (u - 0.5)
end
local function positive(u) return 0.5 + u end

before_each(function() whorl.manual_seed(42) end)

describe("binary ops", function()
    local a = whorl.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "double")
    local b = whorl.tensor({ 2, -1, 0.5 }, "double")

    it("compute the hand-checked values, with broadcasting", function()
        assert_close({ { 3, 1, 3.5 }, { 6, 4, 6.5 } }, a + b)
        assert_close({ { -1, 3, 2.5 }, { 2, 6, 5.5 } }, a - b)
        assert_close({ { 2, -2, 1.5 }, { 8, -5, 3 } }, a * b)
        assert_close({ { 0.5, -2, 6 }, { 2, -5, 12 } }, a / b)
        assert_close({ { 1, 0.5, math.sqrt(3) }, { 16, 0.2, math.sqrt(6) } }, whorl.pow(a, b))
        assert_close({ { 2, 2, 3 }, { 4, 5, 6 } }, whorl.maximum(a, b))
        assert_close({ { 1, -1, 0.5 }, { 2, -1, 0.5 } }, whorl.minimum(a, b))
        assert_close({ { 3, 1, 3.5 }, { 6, 4, 6.5 } }, a:add(b))
        assert_close({ { 2, -2, 1.5 }, { 8, -5, 3 } }, whorl.mul(a, b))
    end)

    it("take a number on either side", function()
        local t = whorl.tensor({ 1, 2, 4 }, "double")
        assert_close({ 3, 4, 6 }, t + 2)
        assert_close({ 3, 4, 6 }, 2 + t)
        assert_close({ -1, 0, 2 }, t - 2)
        assert_close({ 1, 0, -2 }, 2 - t)
        assert_close({ 2, 4, 8 }, t * 2)
        assert_close({ 2, 4, 8 }, 2 * t)
        assert_close({ 0.5, 1, 2 }, t / 2)
        assert_close({ 2, 1, 0.5 }, 2 / t)
        assert_close({ 1, 4, 16 }, t ^ 2)
        assert_close({ 1, math.sqrt(2), 2 }, t ^ 0.5)
        assert_close({ 2, 4, 16 }, 2 ^ t)
        assert_close({ -1, -2, -4 }, -t)
        assert_close({ 2, 2, 4 }, whorl.maximum(t, 2))
        assert_close({ 1, 1, 1 }, whorl.minimum(1, t))
        assert_close({ 0, 1, 3 }, whorl.sub(t, 1))
        assert.equal("float32", (whorl.ones(2) * 2):dtype()) -- keeps the tensor's dtype
    end)

    it("broadcast size-1 and missing leading dims", function()
        local col = whorl.tensor({ { 1 }, { 2 } }, "double")
        local row = whorl.tensor({ { 10, 20, 30 } }, "double")
        assert.same({ 2, 3 }, (col + row):size())
        assert_close({ { 11, 21, 31 }, { 12, 22, 32 } }, col + row)
        assert.same({ 4, 2, 3 }, (whorl.zeros(4, 1, 3) + whorl.zeros(2, 1)):size())
        assert_close({ { 2, 3, 4 }, { 5, 6, 7 } }, a + whorl.tensor(1, "double"))
    end)

    it("name the shapes when they cannot broadcast", function()
        raises(function() return a + whorl.zeros(2, "double") end,
            "add: shapes [2, 3] and [2] cannot be broadcast together (dimension 2: 3 vs 2)")
        raises(function() return whorl.maximum(whorl.zeros(3, 4), whorl.zeros(2, 4)) end,
            "maximum: shapes [3, 4] and [2, 4] cannot be broadcast")
        raises(function() return a + "x" end, "second operand must be a tensor or a number")
        raises(function() return whorl.add(1, 2) end, "at least one operand must be a tensor")
    end)

    it("agree between the serial and the threaded paths", function()
        local n = 100000 -- above the size where loops go parallel
        local x = whorl.arange(n, "double")
        local y = x * x + x / 4 - 1
        for _, i in ipairs({ 1, 2, 33000, 77777, n }) do
            local v = i - 1
            assert.near(v * v + v / 4 - 1, y[i], 1e-6 * (1 + v * v))
        end
    end)
end)

describe("gradients (float64, finite differences)", function()
    local ops = {
        add = function(x, y) return x + y end,
        sub = function(x, y) return x - y end,
        mul = function(x, y) return x * y end,
        div = function(x, y) return x / y end,
        pow = function(x, y) return whorl.pow(x, y) end,
        maximum = function(x, y) return whorl.maximum(x, y) end,
        minimum = function(x, y) return whorl.minimum(x, y) end,
    }
    -- b's columns lie far above and below a's values, so max/min have no ties
    local function b_values(u) return u < 0.5 and 1.2 + u or -0.3 - u end
    for name, f in pairs(ops) do
        it(name .. " with equal shapes and with broadcasting", function()
            local a = input({ 2, 3 }, positive)
            local b = input({ 2, 3 }, b_values)
            assert.is_true(gradcheck(f, { a, b }, { name = name }))
            assert.is_true(gradcheck(f, { a, input({ 3 }, b_values) }, { name = name .. " (2,3)x(3)" }))
            assert.is_true(gradcheck(f, { input({ 2, 1 }, positive), input({ 1, 3 }, b_values) },
                { name = name .. " (2,1)x(1,3)" }))
            local s = input({}, b_values)
            assert.is_true(gradcheck(f, { a, s }, { name = name .. " with a 0-d operand" }))
        end)
    end

    it("checks only the inputs that require grad", function()
        local a = input({ 2, 3 }, positive)
        local c = whorl.tensor({ 1, 2, 3 }, "double")
        assert.is_true(gradcheck(function(x, y) return x * y end, { a, c }))
    end)

    local scalar_ops = {
        ["t + s"] = function(x) return x + 1.5 end,
        ["s + t"] = function(x) return 1.5 + x end,
        ["t - s"] = function(x) return x - 1.5 end,
        ["s - t"] = function(x) return 1.5 - x end,
        ["t * s"] = function(x) return x * -2.5 end,
        ["s * t"] = function(x) return -2.5 * x end,
        ["t / s"] = function(x) return x / 3 end,
        ["s / t"] = function(x) return 3 / x end,
        ["t ^ 2"] = function(x) return x ^ 2 end,
        ["t ^ 1.7"] = function(x) return x ^ 1.7 end,
        ["s ^ t"] = function(x) return 2 ^ x end,
        ["-t"] = function(x) return -x end,
    }
    for name, f in pairs(scalar_ops) do
        it(name, function()
            assert.is_true(gradcheck(f, { input({ 3, 2 }, positive) }, { name = name }))
        end)
    end

    local unary = {
        exp = signed, log = positive, sqrt = positive, abs = signed, relu = signed,
        sigmoid = signed, tanh = signed, neg = signed, square = signed, sin = signed,
        cos = signed,
    }
    for name, map in pairs(unary) do
        it(name, function()
            assert.is_true(gradcheck(whorl[name], { input({ 2, 3 }, map) }, { name = name }))
            assert.is_true(gradcheck(function(x) return x[name](x) end, { input({ 4 }, map) },
                { name = name .. " (method)" }))
        end)
    end

    it("leaky_relu and clamp", function()
        assert.is_true(gradcheck(function(x) return whorl.leaky_relu(x, 0.2) end,
            { input({ 2, 3 }, signed) }, { name = "leaky_relu" }))
        -- values kept away from the bounds -0.5 and 0.5
        local function off_bounds(u) return u < 0.3 and -0.9 + u or u < 0.7 and u - 0.5 or 0.3 + u end
        local x = input({ 3, 4 }, off_bounds)
        assert.is_true(gradcheck(function(t) return whorl.clamp(t, -0.5, 0.5) end, { x }, { name = "clamp" }))
        assert.is_true(gradcheck(function(t) return t:clamp(nil, 0.5) end, { x }, { name = "clamp hi" }))
        assert.is_true(gradcheck(function(t) return t:clamp(-0.5) end, { x }, { name = "clamp lo" }))
    end)

    it("a composite expression", function()
        local x, y = input({ 2, 3 }, signed), input({ 3 }, positive)
        assert.is_true(gradcheck(function(p, q)
            return (p * q):tanh() + whorl.sigmoid(p) / q - (p ^ 2) * 0.5
        end, { x, y }, { name = "composite" }))
    end)

    it("the helper catches a wrong gradient", function()
        local x = input({ 3 }, positive)
        local ok, err = pcall(gradcheck, function(t) return t:detach() * t end, { x }, { name = "wrong" })
        assert.is_false(ok)
        assert.truthy(err:find("gradcheck (wrong): gradient of input 1 differs at element", 1, true))
    end)
end)

describe("unary ops", function()
    it("compute the hand-checked values", function()
        local t = whorl.tensor({ -2, 0, 1.5 }, "double")
        assert_close({ math.exp(-2), 1, math.exp(1.5) }, whorl.exp(t))
        assert_close({ 2, 0, 1.5 }, whorl.abs(t))
        assert_close({ 0, 0, 1.5 }, whorl.relu(t))
        assert_close({ 1 / (1 + math.exp(2)), 0.5, 1 / (1 + math.exp(-1.5)) }, whorl.sigmoid(t))
        assert_close({ -0.964027580076, 0, 0.905148253645 }, whorl.tanh(t))
        assert_close({ 2, 0, -1.5 }, whorl.neg(t))
        assert_close({ 4, 0, 2.25 }, whorl.square(t))
        assert_close({ math.sin(-2), 0, math.sin(1.5) }, t:sin())
        assert_close({ math.cos(-2), 1, math.cos(1.5) }, t:cos())
        assert_close({ -0.02, 0, 1.5 }, whorl.leaky_relu(t)) -- default slope 0.01
        assert_close({ -0.6, 0, 1.5 }, t:leaky_relu(0.3))
        assert_close({ -1, 0, 1 }, whorl.clamp(t, -1, 1))
        assert_close({ -2, 0, 1 }, whorl.clamp(t, nil, 1))
        local p = whorl.tensor({ 0.25, 1, 4 }, "double")
        assert_close({ math.log(0.25), 0, math.log(4) }, p:log())
        assert_close({ 0.5, 1, 2 }, p:sqrt())
        raises(function() whorl.clamp(t, 1, -1) end, "clamp: min (1) must not exceed max (-1)")
    end)
end)

describe("in-place ops", function()
    it("update values and return the tensor", function()
        local t = whorl.tensor({ 1, 2, 3 }, "double")
        local o = whorl.tensor({ 10, 20, 30 }, "double")
        assert.equal(t, t:add_(o))
        assert_close({ 11, 22, 33 }, t)
        t:add_(o, -0.5)
        assert_close({ 6, 12, 18 }, t)
        t:add_(1)
        assert_close({ 7, 13, 19 }, t)
        t:sub_(o, 0.1)
        assert_close({ 6, 11, 16 }, t)
        t:mul_(0.5)
        assert_close({ 3, 5.5, 8 }, t)
        t:mul_(whorl.tensor({ 2, 2, 0 }, "double"))
        assert_close({ 6, 11, 0 }, t)
        t:div_(2)
        assert_close({ 3, 5.5, 0 }, t)
        t:addcmul_(o, o, 0.01)
        assert_close({ 4, 9.5, 9 }, t)
        t:addcdiv_(o, whorl.tensor({ 5, 10, 10 }, "double"))
        assert_close({ 6, 11.5, 12 }, t)
        t:clamp_(7, 12)
        assert_close({ 7, 11.5, 12 }, t)
        t:sqrt_():square_()
        assert_close({ 7, 11.5, 12 }, t)
        t:neg_():exp_():log_()
        assert_close({ -7, -11.5, -12 }, t)
        t:copy_(whorl.tensor({ 1, 2, 3 }, "float")) -- converts
        assert_close({ 1, 2, 3 }, t)
        t:fill_(4)
        assert_close({ 4, 4, 4 }, t)
        t:zero_()
        assert_close({ 0, 0, 0 }, t)
    end)

    it("broadcast the argument into the updated tensor, not the other way", function()
        local m = whorl.zeros(2, 3, "double")
        m:add_(whorl.tensor({ 1, 2, 3 }, "double"))
        assert_close({ { 1, 2, 3 }, { 1, 2, 3 } }, m)
        m:copy_(whorl.tensor({ { 7 }, { 8 } }, "double"))
        assert_close({ { 7, 7, 7 }, { 8, 8, 8 } }, m)
        raises(function() whorl.zeros(3, "double"):add_(m) end,
            "add_: argument of shape [2, 3] cannot be broadcast to the updated tensor's shape [3]")
        raises(function() m:div_(m) end, "div_: divides by a number only")
    end)

    it("work on strided views", function()
        local m = whorl.tensor({ { 1, 2 }, { 3, 4 } }, "double")
        m:t():mul_(whorl.tensor({ 1, 10 }, "double"))
        assert_close({ { 1, 2 }, { 30, 40 } }, m)
        m[2]:fill_(0)
        assert_close({ { 1, 2 }, { 0, 0 } }, m)
    end)

    it("refuse a leaf that requires grad while recording, and work under no_grad", function()
        local w = whorl.ones(3, { dtype = "double", requires_grad = true })
        raises(function() w:add_(1) end,
            "add_: in-place op on a tensor that requires grad while gradients are recorded",
            "whorl.no_grad")
        raises(function() w:mul_(w) end, "mul_: in-place op on a tensor that requires grad")
        raises(function() w:exp_() end, "in-place op on a tensor that requires grad")
        raises(function() w:fill_(0) end, "fill_: in-place op")
        raises(function() w[1] = 5 end, "index assignment: in-place op")
        raises(function() w:set(1, 5) end, "set: in-place op")
        whorl.no_grad(function()
            w:add_(whorl.ones(3, "double"), -0.5)
            w[2] = 4
            w:set(3, 9)
        end)
        assert_close({ 0.5, 4, 9 }, w)
        assert.is_true(w.requires_grad)
    end)

    it("refuse integer tensors", function()
        raises(function() whorl.zeros(2, "byte"):add_(1) end, "add_: self must be float32 or float64, got uint8")
    end)
end)
