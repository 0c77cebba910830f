-- matmul / mm: every shape case, strided operands, errors and gradients.
local whorl = require "whorl"
local gradcheck = require "helpers.gradcheck"

local function D(data) return whorl.tensor(data, { dtype = "float64" }) end
local function randn(...)
    local t = whorl.randn({ ... }, { dtype = "float64" })
    t.requires_grad = true
    return t
end
local function plain(...) return whorl.randn({ ... }, { dtype = "float64" }) end

local function check(t, expected, shape, tol)
    tol = tol or 1e-12
    if shape then assert.same(shape, t:size()) end
    local function walk(a, b, path)
        if type(b) == "table" then
            assert.equal(#b, #a, "length at " .. path)
            for i = 1, #b do walk(a[i], b[i], path .. "[" .. i .. "]") end
        else
            assert(math.abs(a - b) <= tol * math.max(1, math.abs(b)),
                   string.format("at %s: got %.17g, expected %.17g", path, a, b))
        end
    end
    walk(t:totable(), expected, "")
end

-- Plain Lua product of two nested 2-d tables.
local function ref_mm(a, b)
    local out = {}
    for i = 1, #a do
        out[i] = {}
        for j = 1, #b[1] do
            local s = 0
            for k = 1, #b do s = s + a[i][k] * b[k][j] end
            out[i][j] = s
        end
    end
    return out
end

local function errmsg(f)
    local ok, err = pcall(f)
    assert.is_false(ok, "expected an error")
    return tostring(err)
end

describe("matmul values", function()
    local a = D({ { 1, 2, 3 }, { 4, 5, 6 } })          -- (2, 3)
    local b = D({ { 1, 0 }, { 0, 1 }, { 2, -1 } })     -- (3, 2)

    it("multiplies matrices", function()
        check(whorl.matmul(a, b), { { 7, -1 }, { 16, -1 } }, { 2, 2 })
        check(a:mm(b), { { 7, -1 }, { 16, -1 } })
        check(b:matmul(a), { { 1, 2, 3 }, { 4, 5, 6 }, { -2, -1, 0 } }, { 3, 3 })
        local f = whorl.tensor({ { 1, 2 }, { 3, 4 } }):matmul(whorl.tensor({ { 1 }, { 1 } }))
        assert.equal("float32", f:dtype())
        check(f, { { 3 }, { 7 } })
    end)

    it("treats 1-d operands as vectors", function()
        local v = D({ 1, -1, 2 })
        check(a:matmul(v), { 5, 11 }, { 2 })               -- (m,k)@(k)
        check(D({ 1, 2 }):matmul(a), { 9, 12, 15 }, { 3 })  -- (k)@(k,n)
        local dot = v:matmul(D({ 3, 4, 5 }))
        assert.same({}, dot:size())
        assert.equal(9, dot:item())
    end)

    it("reads transposed and strided operands in place or by copy", function()
        local x, y = plain(5, 4), plain(4, 3)
        local ref = ref_mm(x:totable(), y:totable())
        check(x:t():contiguous():t():matmul(y), ref, { 5, 3 }, 1e-12)
        check(x:matmul(y:t():contiguous():t()), ref, nil, 1e-12)
        check(x:t():t():matmul(y), ref, nil, 1e-12)
        -- a stride-2 last dim is not a BLAS layout: copied first
        local wide = whorl.zeros({ 5, 8 }, { dtype = "float64" })
        local every_other = whorl.zeros({ 5, 4 }, { dtype = "float64" })
        for i = 1, 5 do for k = 1, 4 do
            wide:set(i, 2 * k - 1, x:get(i, k))
            every_other:set(i, k, x:get(i, k))
        end end
        local strided = wide:view(5, 4, 2):select(3, 1)
        assert.same({ 8, 2 }, strided:stride())
        check(strided:matmul(y), ref, nil, 1e-12)
        -- an expanded (stride 0) operand
        local row = plain(1, 4)
        local e = row:expand(5, 4)
        check(e:matmul(y), ref_mm(e:contiguous():totable(), y:totable()), nil, 1e-12)
    end)

    it("multiplies batches and broadcasts batch dims", function()
        local A, B = plain(3, 2, 4), plain(3, 4, 5)
        local C = A:matmul(B)
        assert.same({ 3, 2, 5 }, C:size())
        for i = 1, 3 do check(C:select(1, i), ref_mm(A:select(1, i):totable(), B:select(1, i):totable()), nil, 1e-12) end
        local W = plain(4, 5)
        local CW = A:matmul(W)                           -- batch @ matrix: one folded GEMM
        assert.same({ 3, 2, 5 }, CW:size())
        for i = 1, 3 do check(CW:select(1, i), ref_mm(A:select(1, i):totable(), W:totable()), nil, 1e-12) end
        local M = plain(2, 4)
        local MC = M:matmul(B)                           -- matrix @ batch
        assert.same({ 3, 2, 5 }, MC:size())
        for i = 1, 3 do check(MC:select(1, i), ref_mm(M:totable(), B:select(1, i):totable()), nil, 1e-12) end
        local P, Q = plain(2, 1, 3, 4), plain(5, 4, 2)   -- (2,1) x (5) batch -> (2,5)
        local PQ = P:matmul(Q)
        assert.same({ 2, 5, 3, 2 }, PQ:size())
        for i = 1, 2 do for j = 1, 5 do
            check(PQ:select(1, i):select(1, j),
                  ref_mm(P:select(1, i):select(1, 1):totable(), Q:select(1, j):totable()), nil, 1e-12)
        end end
        local v = plain(4)
        local Av = A:matmul(v)                           -- batch @ vector
        assert.same({ 3, 2 }, Av:size())
        local vB = v:matmul(B)                           -- vector @ batch
        assert.same({ 3, 5 }, vB:size())
        check(vB:select(1, 2), ref_mm({ v:totable() }, B:select(1, 2):totable())[1], nil, 1e-12)
    end)

    it("handles empty dims", function()
        local z = whorl.zeros({ 2, 0 }, { dtype = "float64" }):matmul(whorl.zeros({ 0, 3 }, { dtype = "float64" }))
        check(z, { { 0, 0, 0 }, { 0, 0, 0 } }, { 2, 3 })
        assert.same({ 0, 3 }, whorl.zeros(0, 2):matmul(whorl.zeros(2, 3)):size())
    end)
end)

describe("matmul errors", function()
    it("names both shapes when the inner sizes differ", function()
        local msg = errmsg(function() return whorl.matmul(whorl.zeros(2, 3), whorl.zeros(4, 5)) end)
        assert.matches("matmul", msg)
        assert.matches("[2, 3]", msg, 1, true)
        assert.matches("[4, 5]", msg, 1, true)
        assert.matches("3 columns", msg)
        assert.matches("4 rows", msg)
        msg = errmsg(function() return whorl.zeros(2, 3, 4):matmul(whorl.zeros(5)) end)
        assert.matches("[2, 3, 4]", msg, 1, true)
    end)

    it("rejects batch dims that do not broadcast, dtype mixes and scalars", function()
        local msg = errmsg(function() return whorl.zeros(2, 3, 4):matmul(whorl.zeros(3, 4, 5)) end)
        assert.matches("batch", msg)
        assert.matches("[3, 4, 5]", msg, 1, true)
        assert.matches("dtypes differ", errmsg(function() return whorl.zeros(2, 2):matmul(D({ { 1, 2 }, { 3, 4 } })) end))
        assert.matches("at least 1 dimension", errmsg(function() return whorl.matmul(whorl.tensor(2), whorl.zeros(2)) end))
        assert.matches("uint8", errmsg(function() return whorl.zeros({ 2, 2 }, "uint8"):matmul(whorl.zeros({ 2, 2 }, "uint8")) end))
        assert.matches("mm: expects two 2%-d", errmsg(function() return whorl.zeros(2):mm(whorl.zeros(2, 2)) end))
    end)
end)

describe("matmul gradients", function()
    it("matrix @ matrix, with transposed operands", function()
        gradcheck(function(a, b) return a:matmul(b) end, { randn(3, 4), randn(4, 2) })
        gradcheck(function(a, b) return a:t():matmul(b:t()) end, { randn(4, 3), randn(2, 4) })
        gradcheck(function(a, b) return a:mm(b) end, { randn(1, 3), randn(3, 1) })
    end)

    it("vector cases", function()
        gradcheck(function(a, b) return a:matmul(b) end, { randn(3), randn(3, 2) })
        gradcheck(function(a, b) return a:matmul(b) end, { randn(2, 3), randn(3) })
        gradcheck(function(a, b) return a:matmul(b) end, { randn(4), randn(4) })
        gradcheck(function(a, b) return a:matmul(b) end, { randn(3), randn(2, 3, 2) })
        gradcheck(function(a, b) return a:matmul(b) end, { randn(2, 2, 3), randn(3) })
    end)

    it("batched and broadcast", function()
        gradcheck(function(a, b) return a:matmul(b) end, { randn(2, 3, 4), randn(2, 4, 2) })
        gradcheck(function(a, b) return a:matmul(b) end, { randn(2, 3, 4), randn(4, 2) })
        gradcheck(function(a, b) return a:matmul(b) end, { randn(3, 4), randn(2, 4, 2) })
        gradcheck(function(a, b) return a:matmul(b) end, { randn(2, 1, 2, 3), randn(3, 3, 2) })
        gradcheck(function(a, b) return a:matmul(b) end, { randn(1, 2, 3), randn(3, 3, 2) })
        -- a transposed batch operand (its gradient fold goes through a copy)
        gradcheck(function(a, b) return a:transpose(2, 3):matmul(b) end, { randn(2, 4, 3), randn(4, 2) })
        gradcheck(function(a, b) return a:matmul(b:transpose(1, 2)) end, { randn(2, 3, 4), randn(2, 4) })
    end)

    it("only for the operands that need one, and in float32 too", function()
        local fixed = plain(4, 2)
        gradcheck(function(a) return a:matmul(fixed) end, { randn(3, 4) })
        local a = whorl.randn({ 3, 4 }, { requires_grad = true })
        local b = whorl.randn({ 2, 4, 5 })
        a:matmul(b):sum():backward()
        assert.equal("float32", a.grad:dtype())
        assert.same({ 3, 4 }, a.grad:size())
        -- d/da sum(a @ b) = sum over batch and columns of b, per k
        local bs = b:sum({ 1, 3 }):totable()
        local g = a.grad:totable()
        for i = 1, 3 do for k = 1, 4 do assert(math.abs(g[i][k] - bs[k]) < 1e-4) end end
        assert.is_nil(b.grad)
    end)
end)
