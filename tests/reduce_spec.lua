-- Reductions, argmax, softmax / log_softmax: values, accuracy, errors, gradients.
local whorl = require "whorl"
local gradcheck = require "helpers.gradcheck"

local function D(data) return whorl.tensor(data, { dtype = "float64" }) end
local function leaf(data) return whorl.tensor(data, { dtype = "float64", requires_grad = true }) end
local function randn(...)
    local t = whorl.randn({ ... }, { dtype = "float64" })
    t.requires_grad = true
    return t
end

local function check(t, expected, shape, tol)
    tol = tol or 1e-12
    if shape then assert.same(shape, t:size()) end
    local got = t:totable()
    local function walk(a, b, path)
        if type(b) == "table" then
            assert.equal(#b, #a, "length at " .. path)
            for i = 1, #b do walk(a[i], b[i], path .. "[" .. i .. "]") end
        else
            assert(math.abs(a - b) <= tol * math.max(1, math.abs(b)),
                   string.format("at %s: got %.17g, expected %.17g", path, a, b))
        end
    end
    walk(got, expected, "")
end

local function errmsg(f)
    local ok, err = pcall(f)
    assert.is_false(ok, "expected an error")
    return tostring(err)
end

-- x = [[[0 1 2 3] [4 5 6 7] [8 9 10 11]] [[12 ...] ...]]  (2, 3, 4)
local function cube() return whorl.arange(0, 24, { dtype = "float64" }):view(2, 3, 4) end

describe("sum and mean", function()
    it("reduce all dims to a 0-d tensor", function()
        local x = D({ { 1, 2, 3 }, { 4, 5, 6 } })
        assert.same({}, x:sum():size())
        assert.equal(21, x:sum():item())
        assert.equal(3.5, x:mean():item())
        assert.same({ 1, 1 }, x:sum(nil, true):size())
        assert.equal(21, whorl.sum(x):item())
    end)

    it("reduce one dim, with and without keepdim", function()
        local x = D({ { 1, 2, 3 }, { 4, 5, 6 } })
        check(x:sum(1), { 5, 7, 9 }, { 3 })
        check(x:sum(2), { 6, 15 }, { 2 })
        check(x:sum(-1, true), { { 6 }, { 15 } }, { 2, 1 })
        check(x:mean(1, true), { { 2.5, 3.5, 4.5 } }, { 1, 3 })
        check(x:mean(2), { 2, 5 })
    end)

    it("reduce several dims", function()
        local x = cube()
        -- over dims 1 and 3: for row j, sum_i sum_k (12 i + 4 j + k)
        check(x:sum({ 1, 3 }), { 60, 92, 124 }, { 3 })
        check(x:sum({ 3, 1 }, true), { { { 60 }, { 92 }, { 124 } } }, { 1, 3, 1 })
        check(x:sum({ 1, 2 }), { 60, 66, 72, 78 }, { 4 })
        check(x:mean({ -1, -2 }), { 5.5, 17.5 }, { 2 })
        check(x:sum({ 1, 2, 3 }), 276)
    end)

    it("reduce strided inputs", function()
        local x = cube():permute(3, 1, 2) -- (4, 2, 3)
        check(x:sum(1), { { 6, 22, 38 }, { 54, 70, 86 } }, { 2, 3 })
        check(x:sum({ 2, 3 }), { 60, 66, 72, 78 })
        local e = D({ 1, 2 }):view(2, 1):expand(2, 5)
        check(e:sum(2), { 5, 10 })
    end)

    it("give 0 (sum) and NaN (mean) over an empty dim", function()
        local z = whorl.zeros({ 3, 0 }, { dtype = "float64" })
        check(z:sum(2), { 0, 0, 0 })
        local m = z:mean(2):totable()
        assert.is_true(m[1] ~= m[1])
        assert.same({ 0 }, z:sum(1):size())
    end)

    it("agree with each other on larger tensors (parallel and chunked paths)", function()
        whorl.manual_seed(7)
        local x = whorl.randn({ 40, 300, 37 }, { dtype = "float64" })
        local ref = x:sum(3):sum(1)                      -- one dim at a time
        local both = x:sum({ 1, 3 })                     -- planned together
        local via_t = x:permute(3, 2, 1):sum({ 1, 3 })   -- through a copy
        local a, b, c = ref:totable(), both:totable(), via_t:totable()
        for i = 1, 300 do
            assert(math.abs(a[i] - b[i]) < 1e-9 and math.abs(a[i] - c[i]) < 1e-9)
        end
        -- a reference by plain Lua loops for one dim
        local t = x:totable()
        local s2 = x:sum(2):totable()
        for i = 1, 40, 13 do
            for k = 1, 37, 9 do
                local acc = 0
                for j = 1, 300 do acc = acc + t[i][j][k] end
                assert(math.abs(acc - s2[i][k]) < 1e-9)
            end
        end
        -- few output cells, long reduction: split between threads
        local tall = whorl.randn({ 100000, 3 }, { dtype = "float64" })
        local cols = tall:sum(1):totable()
        local rows = tall:t():sum(2):totable()
        for k = 1, 3 do assert(math.abs(cols[k] - rows[k]) < 1e-8) end
    end)

    it("keeps float32 sums accurate over many elements", function()
        local n = 25000000
        local ones = whorl.ones(n)
        assert.equal(n, ones:sum():item()) -- a float32 accumulator stops at 2^24
        local tenth = whorl.full({ n }, 0.1)
        local m = tenth:mean():item()
        assert(math.abs(m - 0.1) < 1e-7, "mean " .. m)
        local rows = whorl.full({ 5, n // 5 }, 0.1):mean(2):totable()
        for i = 1, 5 do assert(math.abs(rows[i] - 0.1) < 1e-7) end
        whorl.close(ones, tenth)
    end)

    it("rejects bad dims", function()
        local x = whorl.zeros(2, 3)
        assert.matches("out of range", errmsg(function() return x:sum(3) end))
        assert.matches("out of range", errmsg(function() return x:sum({ 1, 5 }) end))
        assert.matches("appears twice", errmsg(function() return x:sum({ 1, -2 }) end))
        assert.matches("empty", errmsg(function() return x:mean({}) end))
        assert.matches("float32 or float64",
                       errmsg(function() return whorl.zeros({ 2 }, "uint8"):sum() end))
    end)

    it("have gradients over all, one and several dims", function()
        for _, op in ipairs({ "sum", "mean" }) do
            local f = function(dims, keep) return function(x) return x[op](x, dims, keep) end end
            gradcheck(f(nil, false), { randn(2, 3, 4) })
            gradcheck(f(nil, true), { randn(2, 3, 4) })
            gradcheck(f(2, false), { randn(2, 3, 4) })
            gradcheck(f(-1, true), { randn(2, 3, 4) })
            gradcheck(f({ 1, 3 }, false), { randn(2, 3, 4) })
            gradcheck(f({ 2, 3 }, true), { randn(2, 3, 4) })
            gradcheck(function(x) return x:t()[op](x:t(), 1) end, { randn(3, 4) })
        end
    end)
end)

describe("max and argmax", function()
    it("take the largest values", function()
        local x = D({ { 1, 5, 2 }, { 7, 0, 7 } })
        assert.equal(7, x:max():item())
        check(x:max(1), { 7, 5, 7 })
        check(x:max(2, true), { { 5 }, { 7 } }, { 2, 1 })
        local c = cube()
        check(c:max({ 1, 3 }), { 15, 19, 23 })
        check(c:permute(3, 2, 1):max(3), { { 12, 16, 20 }, { 13, 17, 21 }, { 14, 18, 22 }, { 15, 19, 23 } })
    end)

    it("argmax is 1-based and picks the first maximum", function()
        local x = D({ { 1, 5, 5 }, { 7, 0, 7 } })
        check(x:argmax(2), { 2, 1 })
        check(x:argmax(1, true), { { 2, 1, 2 } }, { 1, 3 })
        assert.equal(4, x:argmax():item()) -- flat, row-major
        check(cube():argmax(2), { { 3, 3, 3, 3 }, { 3, 3, 3, 3 } })
        assert.equal("float64", x:argmax(1):dtype())
    end)

    it("propagates NaN", function()
        local x = D({ 1, 0 / 0, 3 })
        local m = x:max():item()
        assert.is_true(m ~= m)
        assert.equal(2, x:argmax(1):item())
    end)

    it("sends the gradient to the first maximum", function()
        local x = leaf({ 1, 3, 3, 2 })
        x:max():backward()
        check(x.grad, { 0, 1, 0, 0 })
        local y = leaf({ { 4, 1 }, { 4, 9 } })
        y:max(1):sum():backward()
        check(y.grad, { { 1, 0 }, { 0, 1 } })
    end)

    it("refuses an empty reduction", function()
        assert.matches("empty", errmsg(function() return whorl.zeros(2, 0):max(2) end))
    end)

    it("has gradients over all, one and several dims", function()
        -- random values: no ties, so the max is differentiable
        gradcheck(function(x) return x:max() end, { randn(3, 4) })
        gradcheck(function(x) return x:max(nil, true) end, { randn(2, 3) })
        gradcheck(function(x) return x:max(1) end, { randn(3, 4) })
        gradcheck(function(x) return x:max(2, true) end, { randn(3, 4, 2) })
        gradcheck(function(x) return x:max({ 1, 3 }) end, { randn(3, 2, 4) })
        gradcheck(function(x) return x:max({ 1, 2 }, true) end, { randn(3, 2, 4) })
        gradcheck(function(x) return x:t():max(2) end, { randn(4, 3) })
    end)
end)

describe("softmax and log_softmax", function()
    it("normalise along a dim", function()
        local x = D({ 1, 2, 3 })
        local e1, e2, e3 = math.exp(1), math.exp(2), math.exp(3)
        local s = e1 + e2 + e3
        check(whorl.softmax(x, 1), { e1 / s, e2 / s, e3 / s })
        check(x:log_softmax(1), { 1 - math.log(s), 2 - math.log(s), 3 - math.log(s) })
        local m = D({ { 0, 0 }, { 1, 0 } })
        local a = 1 / (1 + math.exp(-1))
        check(m:softmax(1), { { 1 - a, 0.5 }, { a, 0.5 } })
        check(m:softmax(2), { { 0.5, 0.5 }, { a, 1 - a } })
    end)

    it("sums to one along any dim of a strided tensor", function()
        whorl.manual_seed(3)
        local x = whorl.randn({ 3, 4, 5 }, { dtype = "float64" }):permute(2, 3, 1)
        for dim = 1, 3 do
            local s = whorl.softmax(x, dim):sum(dim):totable()
            for _, row in ipairs(s) do for _, v in ipairs(row) do assert(math.abs(v - 1) < 1e-12) end end
            local l = whorl.log_softmax(x, dim):totable()
            local p = whorl.softmax(x, dim):totable()
            for i = 1, #l do for j = 1, #l[i] do for k = 1, #l[i][j] do
                assert(math.abs(math.exp(l[i][j][k]) - p[i][j][k]) < 1e-12)
            end end end
        end
    end)

    it("stays finite for large logits", function()
        for _, dt in ipairs({ "float32", "float64" }) do
            local x = whorl.tensor({ { 1000, 0, -1000 }, { 1000, 1000, 999 } }, dt)
            local p = x:softmax(2):totable()
            local l = x:log_softmax(2):totable()
            for i = 1, 2 do for j = 1, 3 do
                assert(p[i][j] == p[i][j] and p[i][j] < math.huge and l[i][j] > -math.huge)
            end end
            assert(math.abs(p[1][1] - 1) < 1e-6)
            assert(math.abs(l[1][2] + 1000) < 1e-3)
            local c = x:softmax(1):totable() -- the non-last-dim path
            assert(math.abs(c[1][3]) < 1e-30 and math.abs(c[2][3] - 1) < 1e-6)
        end
    end)

    it("needs a valid dim", function()
        assert.matches("required", errmsg(function() return whorl.softmax(whorl.zeros(2)) end))
        assert.matches("out of range", errmsg(function() return whorl.zeros(2, 2):log_softmax(3) end))
    end)

    it("have gradients along several dims", function()
        for dim = 1, 3 do
            gradcheck(function(x) return whorl.softmax(x, dim) end, { randn(2, 3, 4) })
            gradcheck(function(x) return whorl.log_softmax(x, dim) end, { randn(2, 3, 4) })
        end
        gradcheck(function(x) return x:t():softmax(-1) end, { randn(3, 2) })
        gradcheck(function(x) return x:log_softmax(1) end, { randn(5) })
    end)
end)

describe("sum_squares", function()
    it("returns a Lua number", function()
        assert.equal(14, D({ 1, 2, 3 }):sum_squares())
        assert.equal(30, whorl.tensor({ { 1, 3 }, { 2, 4 } }):t():sum_squares())
    end)
end)
