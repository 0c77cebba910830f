-- Shape and view ops: values, storage sharing, strides, errors, gradients.
local whorl = require "whorl"
local gradcheck = require "helpers.gradcheck"

local function D(data) return whorl.tensor(data, { dtype = "float64" }) end
local function leaf(data) return whorl.tensor(data, { dtype = "float64", requires_grad = true }) end
local function randn(...) -- float64 leaf with gradient
    local t = whorl.randn({ ... }, { dtype = "float64" })
    t.requires_grad = true
    return t
end

-- Asserts t has `shape` and the nested values `expected` (to 1e-12).
local function check(t, expected, shape)
    if shape then assert.same(shape, t:size()) end
    local got = t:totable()
    local function walk(a, b, path)
        if type(b) == "table" then
            assert.equal(#b, #a, "length at " .. path)
            for i = 1, #b do walk(a[i], b[i], path .. "[" .. i .. "]") end
        else
            assert(math.abs(a - b) <= 1e-12, string.format("at %s: got %s, expected %s", path, a, b))
        end
    end
    walk(got, expected, "")
end

local function errmsg(f)
    local ok, err = pcall(f)
    assert.is_false(ok, "expected an error")
    return tostring(err)
end

describe("view", function()
    it("reshapes a contiguous tensor and shares its storage", function()
        local a = whorl.arange(0, 6, { dtype = "float64" })
        local v = a:view(2, 3)
        check(v, { { 0, 1, 2 }, { 3, 4, 5 } }, { 2, 3 })
        v:set(2, 1, 42)
        assert.equal(42, a:get(4))
        a:set(1, -1)
        assert.equal(-1, v:get(1, 1))
    end)

    it("infers one -1 and takes a size table", function()
        local a = whorl.zeros(2, 3, 4)
        assert.same({ 6, 4 }, a:view(-1, 4):size())
        assert.same({ 2, 12 }, a:view({ 2, -1 }):size())
    end)

    it("refuses strides that need a copy, and a wrong element count", function()
        local a = whorl.arange(0, 6):view(2, 3):t()
        local msg = errmsg(function() return a:view(6) end)
        assert.matches("view", msg)
        assert.matches("reshape or contiguous", msg, 1, true)
        assert.matches("[3, 2]", msg, 1, true)
        msg = errmsg(function() return whorl.zeros(2, 3):view(4, 2) end)
        assert.matches("[2, 3]", msg, 1, true)
        assert.matches("[4, 2]", msg, 1, true)
        assert.matches("only one", errmsg(function() return whorl.zeros(6):view(-1, -1) end))
    end)

    it("views a narrowed tensor when the strides allow", function()
        local a = whorl.arange(0, 24):view(4, 6)
        local n = a:narrow(1, 2, 2) -- rows 2..3 are contiguous
        local v = n:view(12)
        assert.equal(6, v:get(1))
        v:set(1, 100)
        assert.equal(100, a:get(2, 1))
    end)

    it("has a gradient", function()
        gradcheck(function(x) return x:view(3, 2) end, { randn(2, 3) })
        gradcheck(function(x) return x:view(-1) end, { randn(2, 3, 2) })
    end)
end)

describe("reshape", function()
    it("shares storage when it can and copies when it must", function()
        local a = whorl.arange(0, 6, { dtype = "float64" })
        local r = a:reshape(3, 2)
        r:set(1, 1, 9)
        assert.equal(9, a:get(1))
        local t = a:view(2, 3):t() -- (3, 2), not viewable as 6
        local c = t:reshape(6)
        check(c, { 9, 3, 1, 4, 2, 5 }, { 6 })
        c:set(1, -7)
        assert.equal(9, a:get(1))
    end)

    it("names reshape in its size error", function()
        local msg = errmsg(function() return whorl.zeros(2, 3):reshape(5) end)
        assert.matches("reshape", msg)
        assert.matches("[2, 3]", msg, 1, true)
    end)

    it("has a gradient through both the view and the copy paths", function()
        gradcheck(function(x) return x:reshape(2, 6) end, { randn(3, 4) })
        gradcheck(function(x) return x:t():reshape(12) end, { randn(3, 4) })
        gradcheck(function(x) return x:permute(2, 1, 3):reshape(-1, 2) end, { randn(2, 3, 2) })
    end)
end)

describe("permute and transpose", function()
    it("reorder dims as strided views", function()
        local a = whorl.arange(0, 24):view(2, 3, 4)
        local p = a:permute(3, 1, 2)
        assert.same({ 4, 2, 3 }, p:size())
        assert.same({ 1, 12, 4 }, p:stride())
        assert.equal(a:get(2, 3, 4), p:get(4, 2, 3))
        assert.equal(a:get(1, 2, 3), p:get(3, 1, 2))
        local q = a:permute({ -1, 2, 1 })
        assert.same({ 4, 3, 2 }, q:size())
        local tr = a:transpose(1, 3)
        assert.same({ 4, 3, 2 }, tr:size())
        assert.equal(a:get(2, 1, 3), tr:get(3, 1, 2))
        p:set(1, 1, 1, 77)
        assert.equal(77, a:get(1, 1, 1))
        assert.is_false(p:is_contiguous())
    end)

    it("t() swaps a matrix and refuses more than 2 dims", function()
        local a = D({ { 1, 2, 3 }, { 4, 5, 6 } })
        check(a:t(), { { 1, 4 }, { 2, 5 }, { 3, 6 } }, { 3, 2 })
        assert.matches("at most 2 dims", errmsg(function() return whorl.zeros(2, 2, 2):t() end))
    end)

    it("reject bad permutations", function()
        local a = whorl.zeros(2, 3)
        assert.matches("appears twice", errmsg(function() return a:permute(1, 1) end))
        assert.matches("2 dims given for a 3%-d", errmsg(function() return whorl.zeros(1, 2, 3):permute(2, 1) end))
        assert.matches("out of range", errmsg(function() return a:transpose(1, 3) end))
    end)

    it("have gradients", function()
        gradcheck(function(x) return x:permute(3, 1, 2) end, { randn(2, 3, 4) })
        gradcheck(function(x) return x:transpose(1, 2) end, { randn(3, 2) })
        gradcheck(function(x) return x:transpose(-1, 1) end, { randn(2, 1, 3) })
        gradcheck(function(x) return x:t() end, { randn(2, 4) })
        -- the gradient of a permute feeding another op arrives strided
        gradcheck(function(x) return x:permute(2, 1):contiguous() * 2 end, { randn(3, 2) })
    end)
end)

describe("narrow and select", function()
    it("take 1-based slices that share storage", function()
        local a = whorl.arange(1, 13, { dtype = "float64" }):view(3, 4)
        check(a:narrow(2, 2, 2), { { 2, 3 }, { 6, 7 }, { 10, 11 } }, { 3, 2 })
        check(a:narrow(1, -1, 1), { { 9, 10, 11, 12 } }, { 1, 4 })
        assert.same({ 3, 0 }, a:narrow(2, 5, 0):size())
        check(a:select(1, 2), { 5, 6, 7, 8 }, { 4 })
        check(a:select(2, -1), { 4, 8, 12 }, { 3 })
        a:select(2, 1):fill_(0)
        check(a:select(2, 1), { 0, 0, 0 })
        a:narrow(1, 3, 1):fill_(-1)
        assert.equal(-1, a:get(3, 4))
    end)

    it("report ranges the Lua way", function()
        local a = whorl.zeros(3, 4)
        local msg = errmsg(function() return a:narrow(2, 3, 3) end)
        assert.matches("narrow", msg)
        assert.matches("size 4", msg)
        assert.matches("out of range", errmsg(function() return a:narrow(2, 0, 1) end))
        msg = errmsg(function() return a:select(1, 4) end)
        assert.matches("select: index 4 is out of range for dimension 1 of size 3", msg, 1, true)
        assert.matches("out of range", errmsg(function() return a:select(3, 1) end))
    end)

    it("have gradients", function()
        gradcheck(function(x) return x:narrow(2, 2, 3) end, { randn(3, 5) })
        gradcheck(function(x) return x:narrow(1, -2, 2) end, { randn(4, 2) })
        gradcheck(function(x) return x:select(1, 2) end, { randn(3, 4) })
        gradcheck(function(x) return x:select(3, -1) end, { randn(2, 3, 2) })
        -- two slices of the same input add up
        gradcheck(function(x) return x:narrow(1, 1, 2) + x:narrow(1, 2, 2) * x:select(1, 3) end,
                  { randn(3, 2) })
    end)
end)

describe("unsqueeze, squeeze, flatten", function()
    it("add and remove size-1 dims", function()
        local a = whorl.zeros(2, 3)
        assert.same({ 1, 2, 3 }, a:unsqueeze(1):size())
        assert.same({ 2, 3, 1 }, a:unsqueeze(3):size())
        assert.same({ 2, 3, 1 }, a:unsqueeze(-1):size())
        assert.same({ 2, 1, 3 }, a:unsqueeze(-2):size())
        local b = whorl.zeros(1, 2, 1, 3)
        assert.same({ 2, 3 }, b:squeeze():size())
        assert.same({ 1, 2, 3 }, b:squeeze(3):size())
        assert.same({ 1, 2, 1, 3 }, b:squeeze(2):size()) -- size 2: left alone
        assert.same({}, whorl.zeros(1, 1):squeeze():size())
        assert.matches("out of range", errmsg(function() return a:unsqueeze(4) end))
        assert.matches("out of range", errmsg(function() return a:squeeze(3) end))
    end)

    it("keep sharing storage with a strided input", function()
        local a = whorl.arange(0, 6, { dtype = "float64" }):view(2, 3):t()
        local u = a:unsqueeze(2)
        assert.same({ 3, 1, 2 }, u:size())
        check(u:squeeze(), { { 0, 3 }, { 1, 4 }, { 2, 5 } })
        u:set(3, 1, 2, 50)
        assert.equal(50, a:get(3, 2))
    end)

    it("flatten merges a range of dims", function()
        local a = whorl.zeros(2, 3, 4, 5)
        assert.same({ 120 }, a:flatten():size())
        assert.same({ 2, 60 }, a:flatten(2):size())
        assert.same({ 2, 12, 5 }, a:flatten(2, 3):size())
        assert.same({ 2, 3, 20 }, a:flatten(-2, -1):size())
        assert.same({ 1 }, whorl.tensor(3):flatten():size())
    end)

    it("have gradients", function()
        gradcheck(function(x) return x:unsqueeze(2) end, { randn(2, 3) })
        gradcheck(function(x) return x:squeeze() end, { randn(1, 3, 1) })
        gradcheck(function(x) return x:squeeze(1) end, { randn(1, 3) })
        gradcheck(function(x) return x:flatten(1, 2) end, { randn(2, 2, 3) })
        gradcheck(function(x) return x:t():flatten() end, { randn(2, 3) })
    end)
end)

describe("expand", function()
    it("broadcasts with zero strides", function()
        local a = D({ { 1 }, { 2 } })
        local e = a:expand(2, 3)
        check(e, { { 1, 1, 1 }, { 2, 2, 2 } }, { 2, 3 })
        assert.same({ 1, 0 }, e:stride())
        local e2 = D({ 1, 2, 3 }):expand(2, -1)
        check(e2, { { 1, 2, 3 }, { 1, 2, 3 } })
        assert.same({ 0, 1 }, e2:stride())
        assert.same({ 4, 2, 3 }, a:expand_as(whorl.zeros(4, 2, 3)):size())
        a:set(1, 1, 10)
        assert.equal(10, e:get(1, 3))
    end)

    it("only grows size-1 dims", function()
        local msg = errmsg(function() return whorl.zeros(2, 3):expand(4, 3) end)
        assert.matches("expand", msg)
        assert.matches("[2, 3]", msg, 1, true)
        assert.matches("[4, 3]", msg, 1, true)
    end)

    it("sums the gradient over the expanded dims", function()
        local x = leaf({ { 1 }, { 2 } })
        x:expand(2, 3):sum():backward()
        check(x.grad, { { 3 }, { 3 } })
        gradcheck(function(t) return t:expand(2, 3, 4) end, { randn(3, 1) })
        gradcheck(function(t) return t:expand(4, 2, 3) end, { randn(1, 3) })
        gradcheck(function(t) return t:expand(2, 3) end, { randn(2, 3) })
        gradcheck(function(t) return t:expand_as(whorl.zeros(2, 3, 2)) end, { randn(1, 1, 2) })
    end)
end)

describe("contiguous, clone and dtype conversion", function()
    it("contiguous returns the tensor itself when already laid out", function()
        local a = whorl.arange(0, 6, { dtype = "float64" }):view(2, 3)
        local c = a:contiguous()
        c:set(1, 1, 5)
        assert.equal(5, a:get(1, 1))
        local t = a:t()
        local tc = t:contiguous()
        assert.is_true(tc:is_contiguous())
        assert.same({ 2, 1 }, tc:stride())
        check(tc, { { 5, 3 }, { 1, 4 }, { 2, 5 } })
        tc:set(1, 1, -1)
        assert.equal(5, a:get(1, 1))
    end)

    it("clone copies", function()
        local a = D({ 1, 2, 3 })
        local c = a:clone()
        c:set(1, 9)
        assert.equal(1, a:get(1))
        check(c, { 9, 2, 3 })
    end)

    it("carry gradients", function()
        gradcheck(function(x) return x:contiguous() end, { randn(2, 3) })
        gradcheck(function(x) return x:t():contiguous() end, { randn(2, 3) })
        gradcheck(function(x) return x:clone() end, { randn(3, 2) })
        gradcheck(function(x) return x:narrow(2, 1, 2):clone() end, { randn(3, 3) })
        local x = leaf({ 1, 2 })
        local y = x:contiguous()
        assert.is_true(y.requires_grad)
    end)

    it("to_dtype converts and sends the gradient back in the input's dtype", function()
        local x = leaf({ 1.5, -2.25 })
        local f = x:float()
        assert.equal("float32", f:dtype())
        check(f:double(), { 1.5, -2.25 })
        ;(f * f):sum():backward()
        assert.equal("float64", x.grad:dtype())
        check(x.grad, { 3, -4.5 })
        -- float32 rounding is far above the default step, so use a coarse one
        -- on a function that is linear in each element (exact differences).
        gradcheck(function(t) return t:float():double() * 3 end, { randn(2, 3) },
                  { eps = 1e-2, atol = 1e-4 })
        local plain = D({ 1, 2 })
        local same = plain:double()
        same:set(1, 7)
        assert.equal(7, plain:get(1))
    end)
end)

describe("cat", function()
    it("joins along a dim", function()
        local a, b = D({ { 1, 2 }, { 3, 4 } }), D({ { 5, 6 } })
        check(whorl.cat({ a, b }), { { 1, 2 }, { 3, 4 }, { 5, 6 } }, { 3, 2 })
        check(whorl.cat({ a, b:t() }, 2), { { 1, 2, 5 }, { 3, 4, 6 } }, { 2, 3 })
        check(whorl.concat({ a, a, a }, -1), { { 1, 2, 1, 2, 1, 2 }, { 3, 4, 3, 4, 3, 4 } })
        check(whorl.cat(a, b, 1), { { 1, 2 }, { 3, 4 }, { 5, 6 } })
        check(whorl.cat({ D({ 1 }), D({ 2, 3 }) }), { 1, 2, 3 })
    end)

    it("copies instead of sharing", function()
        local a = D({ 1, 2 })
        local c = whorl.cat({ a, a })
        c:set(1, 100)
        assert.equal(1, a:get(1))
    end)

    it("names the shapes that do not fit", function()
        local msg = errmsg(function() return whorl.cat({ whorl.zeros(2, 3), whorl.zeros(2, 4) }, 1) end)
        assert.matches("cat", msg)
        assert.matches("[2, 4]", msg, 1, true)
        assert.matches("[2, 3]", msg, 1, true)
        msg = errmsg(function() return whorl.cat({ whorl.zeros(2, 3), whorl.zeros(2, 3, 1) }) end)
        assert.matches("[2, 3, 1]", msg, 1, true)
        assert.matches("float64", errmsg(function() return whorl.cat({ whorl.zeros(2), D({ 1 }) }) end))
        assert.matches("out of range", errmsg(function() return whorl.cat({ whorl.zeros(2) }, 2) end))
        assert.matches("empty", errmsg(function() return whorl.cat({}) end))
        assert.matches("not a tensor", errmsg(function() return whorl.cat({ whorl.zeros(2), 3 }) end))
    end)

    it("has a gradient for each of three inputs along each dim", function()
        for dim = 1, 3 do
            local sa, sb, sc = { 2, 3, 2 }, { 2, 3, 2 }, { 2, 3, 2 }
            sb[dim], sc[dim] = 1, 3
            gradcheck(function(a, b, c) return whorl.cat({ a, b, c }, dim) end,
                      { randn(table.unpack(sa)), randn(table.unpack(sb)), randn(table.unpack(sc)) })
        end
        -- strided inputs, and one input that needs no gradient
        local fixed = whorl.randn({ 3, 2 }, { dtype = "float64" })
        gradcheck(function(a, b) return whorl.cat({ a:t(), fixed, b }, 2) end,
                  { randn(2, 3), randn(3, 1) })
    end)
end)

describe("pad", function()
    local x = D({ { 1, 2, 3 }, { 4, 5, 6 } })

    it("constant mode fills with the value", function()
        check(whorl.pad(x, { 1, 2 }), { { 0, 1, 2, 3, 0, 0 }, { 0, 4, 5, 6, 0, 0 } }, { 2, 6 })
        check(whorl.pad(x, { 0, 0, 1, 0 }, "constant", 7), { { 7, 7, 7 }, { 1, 2, 3 }, { 4, 5, 6 } })
        check(x:pad({ 1, 0, 0, 1 }, "constant", -1),
              { { -1, 1, 2, 3 }, { -1, 4, 5, 6 }, { -1, -1, -1, -1 } })
    end)

    it("reflect mode mirrors without repeating the edge", function()
        check(whorl.pad(x, { 2, 1 }, "reflect"), { { 3, 2, 1, 2, 3, 2 }, { 6, 5, 4, 5, 6, 5 } })
        check(whorl.pad(x, { 1, 1, 1, 1 }, "reflect"), {
            { 5, 4, 5, 6, 5 }, { 2, 1, 2, 3, 2 }, { 5, 4, 5, 6, 5 }, { 2, 1, 2, 3, 2 } })
    end)

    it("replicate mode repeats the edge", function()
        check(whorl.pad(x, { 2, 1, 1, 0 }, "replicate"),
              { { 1, 1, 1, 2, 3, 3 }, { 1, 1, 1, 2, 3, 3 }, { 4, 4, 4, 5, 6, 6 } })
    end)

    it("crops with negative pads", function()
        check(whorl.pad(x, { -1, 0 }), { { 2, 3 }, { 5, 6 } })
        check(whorl.pad(x, { -1, 1, 0, -1 }, "reflect"), { { 2, 3, 2 } })
        check(whorl.pad(x, { 1, -2 }, "replicate"), { { 1, 1 }, { 4, 4 } })
    end)

    it("pads strided and uint8 inputs", function()
        check(whorl.pad(x:t(), { 1, 0 }), { { 0, 1, 4 }, { 0, 2, 5 }, { 0, 3, 6 } })
        local b = whorl.pad(whorl.tensor({ 10, 20 }, "uint8"), { 1, 1 }, "constant", 255)
        assert.equal("uint8", b:dtype())
        assert.same({ 255, 10, 20, 255 }, b:totable())
    end)

    it("rejects bad pads", function()
        assert.matches("smaller than its size 3",
                       errmsg(function() return whorl.pad(x, { 3, 0 }, "reflect") end))
        assert.matches("pairs", errmsg(function() return whorl.pad(x, { 1, 1, 1 }) end))
        assert.matches("unknown mode", errmsg(function() return whorl.pad(x, { 1, 1 }, "wrap") end))
        assert.matches("negative size", errmsg(function() return whorl.pad(x, { -2, -2 }) end))
        assert.matches("3 pairs", errmsg(function() return whorl.pad(x, { 1, 1, 1, 1, 1, 1 }) end))
    end)

    it("has gradients in all modes", function()
        for _, mode in ipairs({ "constant", "reflect", "replicate" }) do
            gradcheck(function(t) return whorl.pad(t, { 2, 1 }, mode) end, { randn(2, 4) })
            gradcheck(function(t) return whorl.pad(t, { 1, 2, 2, 1 }, mode, 0.5) end,
                      { randn(2, 3, 4) })
            gradcheck(function(t) return whorl.pad(t, { -1, 2, 1, 0 }, mode) end, { randn(3, 4) })
            gradcheck(function(t) return whorl.pad(t:t(), { 1, 1, 1, 1 }, mode) end, { randn(3, 2) })
        end
        -- reflect sends the mirrored parts back onto the same elements
        local t = leaf({ 1, 2, 3 })
        whorl.pad(t, { 2, 2 }, "reflect"):sum():backward()
        check(t.grad, { 2, 3, 2 }) -- out: 3 2 | 1 2 3 | 2 1
    end)
end)
