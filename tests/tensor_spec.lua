-- Tensors from Lua: creation, dtypes, indexing, views, printing, errors.
local whorl = require "whorl"
local check = require "helpers.check"
local raises = check.raises

describe("creation", function()
    it("zeros, ones, full and empty take sizes as numbers or a table", function()
        local z = whorl.zeros(2, 3)
        assert.same({ 2, 3 }, z:size())
        assert.same({ { 0, 0, 0 }, { 0, 0, 0 } }, z:totable())
        assert.same({ 2, 3 }, whorl.ones({ 2, 3 }):size())
        assert.same({ { 1, 1 }, { 1, 1 } }, whorl.ones(2, 2):totable())
        assert.same({ { 7.5, 7.5, 7.5 } }, whorl.full({ 1, 3 }, 7.5):totable())
        assert.same({ 4 }, whorl.full(4, 2):size())
        assert.same({ 5, 0 }, whorl.empty(5, 0):size())
        assert.equal(0, whorl.empty(5, 0):numel())
    end)

    it("takes the dtype and requires_grad as options", function()
        assert.equal("float32", whorl.zeros(2):dtype())
        assert.equal("float64", whorl.zeros(2, 3, { dtype = "float64" }):dtype())
        assert.equal("float64", whorl.zeros({ 2, 3 }, "double"):dtype())
        assert.equal("uint8", whorl.ones(3, "byte"):dtype())
        local p = whorl.zeros(3, { dtype = "double", requires_grad = true })
        assert.is_true(p.requires_grad)
        assert.is_true(p.is_leaf)
    end)

    it("gives a 0-d tensor without sizes", function()
        local s = whorl.zeros()
        assert.equal(0, s:dim())
        assert.equal(1, s:numel())
        assert.equal(0, s:item())
    end)

    it("arange excludes stop, as in NumPy and PyTorch", function()
        assert.same({ 0, 1, 2, 3 }, whorl.arange(4):totable())
        assert.same({ 2, 3, 4 }, whorl.arange(2, 5):totable())
        assert.same({ 1, 1.5, 2, 2.5 }, whorl.arange(1, 3, 0.5):totable())
        assert.same({ 5, 3, 1 }, whorl.arange(5, 0, -2):totable())
        assert.equal(0, whorl.arange(3, 3):numel())
        assert.equal("float64", whorl.arange(3, { dtype = "double" }):dtype())
        raises(function() whorl.arange(0, 5, 0) end, "arange", "step must be non-zero")
    end)

    it("rand is uniform on [0, 1), randn roughly standard normal, both seeded", function()
        whorl.manual_seed(7)
        local u = whorl.rand(10000, "double")
        local lo, hi, sum, sq = math.huge, -math.huge, 0, 0
        for _, v in ipairs(u:totable()) do
            lo, hi, sum = math.min(lo, v), math.max(hi, v), sum + v
        end
        assert.is_true(lo >= 0 and hi < 1)
        assert.near(0.5, sum / 10000, 0.02)
        local n = whorl.randn(10000, "double"):totable()
        sum = 0
        for _, v in ipairs(n) do sum, sq = sum + v, sq + v * v end
        assert.near(0, sum / 10000, 0.05)
        assert.near(1, sq / 10000, 0.05)
        whorl.manual_seed(7)
        assert.same(u:totable(), whorl.rand(10000, "double"):totable())
    end)

    it("saves and restores the generator state as a string", function()
        whorl.manual_seed(3)
        local state = whorl.get_rng_state()
        assert.equal("string", type(state))
        local a = whorl.randn(5, "double"):totable()
        whorl.set_rng_state(state)
        assert.same(a, whorl.randn(5, "double"):totable())
        raises(function() whorl.set_rng_state("nonsense") end, "not an RNG state")
    end)

    it("whorl.tensor reads nested tables, numbers and tensors", function()
        local t = whorl.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
        assert.same({ 2, 3 }, t:size())
        assert.equal("float32", t:dtype())
        assert.same({ { 1, 2, 3 }, { 4, 5, 6 } }, t:totable())
        local s = whorl.tensor(2.5, { dtype = "double" })
        assert.equal(0, s:dim())
        assert.equal(2.5, s:item())
        local c = whorl.tensor(t, { dtype = "double" })
        assert.equal("float64", c:dtype())
        c[1] = 0 -- a copy: t is unchanged
        assert.equal(1, t:get(1, 1))
        assert.same({ 2, 0 }, whorl.tensor({ {}, {} }):size())
        assert.same({ 2, 1, 2 }, whorl.tensor({ { { 1, 2 } }, { { 3, 4 } } }):size())
    end)

    it("rejects ragged or non-numeric nested tables", function()
        raises(function() whorl.tensor({ { 1, 2 }, { 3 } }) end,
            "tensor: entry [2] has 1 entries, expected 2")
        raises(function() whorl.tensor({ { 1, 2 }, 3 }) end, "entry [2] is a number")
        raises(function() whorl.tensor({ { 1, 2 }, { 3, "x" } }) end,
            "element [2][2] is not a number (string)")
        raises(function() whorl.tensor("abc") end, "number, table or tensor expected")
    end)

    it("round-trips raw bytes", function()
        local t = whorl.tensor({ { 1.5, -2 }, { 3, 4 } }, "double")
        local b = t:bytes()
        assert.equal(32, #b)
        assert.equal(1.5, string.unpack("<d", b))
        local back = whorl.from_bytes(b, "double", 2, 2)
        assert.same(t:totable(), back:totable())
        assert.same({ 4 }, whorl.from_bytes(b, "float64"):size())
        local bytes = whorl.from_bytes("\1\2\255", "uint8", { 3 })
        assert.same({ 1, 2, 255 }, bytes:totable())
        raises(function() whorl.from_bytes(b, "double", 3, 2) end,
            "from_bytes: 32 bytes given", "shape [3, 2] needs 48")
        -- bytes() of a non-contiguous view is its logical row-major content
        local tt = whorl.tensor({ { 1, 2 }, { 3, 4 } }, "double"):t()
        local a, b2, c, d = string.unpack("<dddd", tt:bytes())
        assert.same({ 1, 3, 2, 4 }, { a, b2, c, d })
    end)

    it("reports bad sizes and dtypes", function()
        raises(function() whorl.zeros(2, -1) end, "size -1 of dimension 2 is negative")
        raises(function() whorl.zeros(2.5) end, "size 1 must be an integer, got 2.5")
        raises(function() whorl.zeros(1, 1, 1, 1, 1, 1, 1, 1, 1) end, "at most 8")
        raises(function() whorl.zeros(2, { dtype = "int7" }) end, "unknown dtype 'int7'")
        raises(function() whorl.rand(3, "uint8") end, "rand: needs a float dtype, got uint8")
        raises(function() whorl.zeros(2, { dtype = "uint8", requires_grad = true }) end,
            "requires_grad needs a float dtype")
    end)
end)

describe("dtypes", function()
    it("converts with float(), double(), byte(), to() and type(name)", function()
        local t = whorl.tensor({ 1.25, -3.5, 300 }, "double")
        assert.equal("float32", t:float():dtype())
        assert.same({ 1.25, -3.5, 300 }, t:float():totable())
        assert.same({ 1, 0, 255 }, t:byte():totable()) -- rounds and saturates
        assert.equal("float64", t:byte():double():dtype())
        assert.equal("uint8", t:to("uint8"):dtype())
        assert.equal("whorl.DoubleTensor", t:type())
        assert.equal("whorl.FloatTensor", t:type("whorl.FloatTensor"):type())
        assert.equal(t, t:double()) -- same dtype: the tensor itself
    end)

    it("differentiates through float/double conversion", function()
        local x = whorl.tensor({ 1, 2 }, { dtype = "double", requires_grad = true })
        local y = x:float() * 3
        y:backward(whorl.ones(2))
        assert.equal("float64", x.grad:dtype())
        assert.same({ 3, 3 }, x.grad:totable())
    end)

    it("names the dtypes in mixed-dtype errors", function()
        raises(function() return whorl.zeros(2) + whorl.zeros(2, "double") end,
            "add: dtypes differ (float32 and float64)")
        raises(function() return whorl.zeros(2, "byte"):exp() end,
            "exp: input must be float32 or float64, got uint8")
    end)
end)

describe("indexing", function()
    local m
    before_each(function() m = whorl.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }) end)

    it("t[k] is a row view, a number for 1-d tensors, negative from the end", function()
        assert.same({ 4, 5, 6 }, m[2]:totable())
        assert.equal(6, m[2][3])
        assert.equal(3, m[1][-1])
        assert.same({ 4, 5, 6 }, m[-1]:totable())
        assert.equal(2, #m)
        assert.equal(3, #m[1])
    end)

    it("views share storage with their base", function()
        local row = m[2]
        row[1] = 40
        assert.equal(40, m:get(2, 1))
        m:set(2, 2, 50)
        assert.equal(50, row[2])
        local v = m:view(3, 2)
        v:set(1, 1, -1)
        assert.equal(-1, m:get(1, 1))
        local col = m:t()
        assert.same({ 1, 3 }, col:stride())
        assert.is_false(col:is_contiguous())
        assert.same({ 3, 1 }, m:stride())
        assert.equal(1, m:stride(-1))
        assert.is_true(m:is_contiguous())
    end)

    it("assigns numbers and tensors to rows", function()
        m[1] = 0
        assert.same({ { 0, 0, 0 }, { 4, 5, 6 } }, m:totable())
        m[2] = whorl.tensor({ 7, 8, 9 })
        assert.same({ { 0, 0, 0 }, { 7, 8, 9 } }, m:totable())
        m[1] = whorl.tensor({ 1 }) -- broadcast
        assert.same({ 1, 1, 1 }, m[1]:totable())
        local v = whorl.zeros(3)
        v[2] = 5
        assert.same({ 0, 5, 0 }, v:totable())
    end)

    it("get and set take one index per dimension", function()
        assert.equal(6, m:get(2, 3))
        assert.equal(1, m:get(-2, -3))
        m:set(1, 2, 9.5)
        assert.equal(9.5, m:get(1, 2))
        local s = whorl.tensor(4)
        assert.equal(4, s:get())
        s:set(5)
        assert.equal(5, s:item())
    end)

    it("errors name the index, the dimension and the size", function()
        raises(function() return m[3] end,
            "index: index 3 is out of range for dimension 1 of size 2 (valid: 1..2 or -2..-1)")
        raises(function() return m[0] end, "index 0 is out of range")
        raises(function() return m[1][4] end, "index 4 is out of range for dimension 1 of size 3")
        raises(function() return m:get(1, 4) end,
            "get: index 4 is out of range for dimension 2 of size 3")
        raises(function() return m:get(1) end, "get: 1 indices given for a 2-d tensor of shape [2, 3]")
        raises(function() m:set(1, 1) end, "set: 1 indices given for a 2-d tensor")
        raises(function() return m[1.5] end, "index for dimension 1 must be an integer")
        raises(function() m[1] = "x" end, "the value must be a number or a tensor")
        raises(function() m[1] = whorl.zeros(4) end, "cannot be broadcast")
        raises(function() m.foo = 1 end, "cannot set field 'foo' of a tensor")
        raises(function() return whorl.tensor(1)[1] end, "a 0-d tensor cannot be indexed")
        raises(function() return #whorl.tensor(1) end, "a 0-d tensor has no length")
    end)
end)

describe("queries", function()
    it("size, dim, numel, fields", function()
        local t = whorl.zeros(2, 3, 4)
        assert.same({ 2, 3, 4 }, t:size())
        assert.same({ 2, 3, 4 }, t.shape)
        assert.equal(4, t:size(3))
        assert.equal(2, t:size(-3))
        assert.equal(3, t:dim())
        assert.equal(24, t:numel())
        assert.equal("cpu", t.device)
        assert.is_nil(t.grad_fn)
        raises(function() t:size(4) end, "dimension 4 is out of range for a 3-d tensor")
        raises(function() t:size(0) end, "dimension 0 is out of range")
    end)

    it("item needs exactly one element", function()
        assert.equal(3, whorl.tensor({ { 3 } }):item())
        raises(function() whorl.zeros(2, 3):item() end,
            "item: the tensor has 6 elements (shape [2, 3])")
    end)

    it("totable nests by dimension", function()
        local t = whorl.arange(8):view(2, 2, 2)
        assert.same({ { { 0, 1 }, { 2, 3 } }, { { 4, 5 }, { 6, 7 } } }, t:totable())
        assert.equal(5, whorl.tensor(5):totable())
    end)

    it("== is identity", function()
        local a, b = whorl.zeros(2), whorl.zeros(2)
        assert.is_true(a == a)
        assert.is_false(a == b)
        assert.is_true(whorl.is_tensor(a))
        assert.is_false(whorl.is_tensor({}))
    end)

    it("rejects non-tensors with the argument's position", function()
        raises(function() whorl.exp(3) end, "bad argument #1 to 'exp' (tensor expected, got number)")
    end)
end)

describe("tostring", function()
    it("prints a matrix like Torch7, with whorl's footer", function()
        assert.equal("  1  2  3\n  4  5  6\n[whorl.FloatTensor of size 2x3]",
            tostring(whorl.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })))
    end)

    it("shares one format per tensor", function()
        assert.equal("  0.5000\n  1.2500\n 10.0000\n[whorl.DoubleTensor of size 3]",
            tostring(whorl.tensor({ 0.5, 1.25, 10 }, "double")))
        assert.equal("0.001 *\n 1.0000\n 2.5000\n[whorl.DoubleTensor of size 2]",
            tostring(whorl.tensor({ 0.001, 0.0025 }, "double")))
        assert.equal(" 1.0000e-05\n 1.0000e+03\n[whorl.DoubleTensor of size 2]",
            tostring(whorl.tensor({ 1e-5, 1000 }, "double")))
    end)

    it("prints higher dims as blocks", function()
        local s = tostring(whorl.arange(8, "byte"):view(2, 2, 2))
        assert.equal("(1,.,.) = \n  0  1\n  2  3\n\n(2,.,.) = \n  4  5\n  6  7\n\n" ..
            "[whorl.ByteTensor of size 2x2x2]", s)
    end)

    it("shows the autograd state", function()
        local x = whorl.ones(2, { requires_grad = true })
        assert.truthy(tostring(x):find("[whorl.FloatTensor of size 2, requires grad]", 1, true))
        assert.truthy(tostring(x * x):find("[whorl.FloatTensor of size 2, grad_fn=mul]", 1, true))
        assert.equal(" 2\n[whorl.FloatTensor scalar]", tostring(whorl.tensor(2.0)))
        assert.equal(" 2.5000\n[whorl.FloatTensor scalar]", tostring(whorl.tensor(2.5)))
        assert.equal("[whorl.FloatTensor of size 0x3]", tostring(whorl.zeros(0, 3)))
    end)

    it("abbreviates large tensors and splits wide ones into column chunks", function()
        local s = tostring(whorl.arange(1000000):view(1000, 1000))
        assert.is_true(#s < 2000)
        assert.truthy(s:find("...", 1, true))
        assert.truthy(s:find("999999", 1, true))
        assert.truthy(s:find("[whorl.FloatTensor of size 1000x1000]", 1, true))
        local w = tostring(whorl.ones(2, 40))
        assert.truthy(w:find("Columns 1 to 26", 1, true))
        assert.truthy(w:find("Columns 27 to 40", 1, true))
    end)

    it("t:tostring() is the same text", function()
        local t = whorl.rand(3, 2)
        assert.equal(tostring(t), t:tostring())
    end)
end)

describe("close", function()
    it("releases at once; later use raises", function()
        local live = whorl.memory_stats().live_bytes
        local t = whorl.zeros(1024, 1024)
        assert.equal(live + 4 * 1024 * 1024, whorl.memory_stats().live_bytes)
        t:close()
        assert.equal(live, whorl.memory_stats().live_bytes)
        raises(function() t:size() end, "tensor was closed")
        raises(function() return t + 1 end, "tensor was closed")
        assert.equal("[whorl.Tensor (closed)]", tostring(t))
        t:close() -- twice is harmless
    end)

    it("works as a to-be-closed variable", function()
        local live = whorl.memory_stats().live_bytes
        do
            local t <close> = whorl.zeros(1024, 1024)
            assert.is_true(whorl.memory_stats().live_bytes > live)
        end
        assert.equal(live, whorl.memory_stats().live_bytes)
    end)

    it("keeps views alive after closing the base", function()
        local t = whorl.tensor({ { 1, 2 }, { 3, 4 } })
        local row = t[2]
        t:close()
        assert.same({ 3, 4 }, row:totable())
    end)
end)
