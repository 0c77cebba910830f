-- Autograd from Lua: backward, gradients of leaves and intermediates,
-- whorl.grad, grad modes, detach and the errors of misuse.
local whorl = require "whorl"
local check = require "helpers.check"
local raises = check.raises

local function leaf(values)
    return whorl.tensor(values, { dtype = "double", requires_grad = true })
end

describe("backward", function()
    it("fills the gradients of leaves", function()
        local x, y = leaf({ 1, 2, 3 }), leaf({ 4, 5, 6 })
        local loss = (x * y + x):sum()
        loss:backward()
        assert.same({ 5, 6, 7 }, x.grad:totable())
        assert.same({ 1, 2, 3 }, y.grad:totable())
    end)

    it("accumulates over several backward calls until cleared", function()
        local x = leaf({ 1, 2 })
        ;(x * 3):sum():backward()
        ;(x * x):sum():backward()
        assert.same({ 5, 7 }, x.grad:totable())
        x.grad = nil
        assert.is_nil(x.grad)
        ;(x * 2):sum():backward()
        assert.same({ 2, 2 }, x.grad:totable())
        x:zero_grad()
        assert.is_nil(x.grad)
    end)

    it("takes an explicit gradient for non-scalar outputs", function()
        local x = leaf({ 1, 2, 3 })
        local y = x * x
        y:backward(whorl.tensor({ 1, 0, -1 }, "double"))
        assert.same({ 2, 0, -6 }, x.grad:totable())
        raises(function() (x * x):backward() end,
            "backward: a gradient can only be created implicitly for a one-element output",
            "shape [3]")
        raises(function() (x * x):backward(whorl.ones(2, "double")) end,
            "gradient shape [2] does not match output shape [3]")
    end)

    it("keeps no .grad on intermediates unless retain_grad is called", function()
        local x = leaf({ 1, 2 })
        local h = x * 2
        local k = x * 3
        assert.is_false(h.is_leaf)
        assert.equal(h, h:retain_grad()) -- returns self
        ;(h * k):sum():backward()
        assert.same({ 3, 6 }, h.grad:totable())
        assert.is_nil(k.grad)
        assert.same({ 12, 24 }, x.grad:totable())
    end)

    it("refuses a second backward through a freed graph unless retain_graph", function()
        local x = leaf({ 1, 2 })
        local loss = (x * x):sum()
        loss:backward()
        raises(function() loss:backward() end, "already freed", "retain_graph")
        local x2 = leaf({ 1, 2 })
        local loss2 = (x2 * x2):sum()
        loss2:backward({ retain_graph = true })
        loss2:backward()
        assert.same({ 4, 8 }, x2.grad:totable())
    end)

    it("detects in-place changes to a tensor saved for backward", function()
        local x = leaf({ 1, 2 })
        local h = x * 2
        local y = (h * h):sum() -- saves h
        whorl.no_grad(function() h:add_(1) end)
        raises(function() y:backward() end, "modified in place")
    end)

    it("refuses backward from a tensor without history", function()
        raises(function() whorl.ones(1):backward() end, "does not require grad")
    end)
end)

describe("whorl.grad", function()
    it("returns gradients for leaves and intermediates, leaving .grad alone", function()
        local x = leaf({ 1, 2, 3 })
        local a = x * 2
        local out = (a * a):sum()
        local g = whorl.grad(out, { a, x })
        assert.same({ 4, 8, 12 }, g[1]:totable())
        assert.same({ 8, 16, 24 }, g[2]:totable())
        assert.is_nil(x.grad)
        assert.is_nil(a.grad)
    end)

    it("takes grad_outputs, several outputs and retain_graph", function()
        local x = leaf({ 1, 2 })
        local y1, y2 = x * 3, x * x
        local g = whorl.grad({ y1, y2 }, x, {
            grad_outputs = { whorl.ones(2, "double"), whorl.tensor({ 1, 10 }, "double") },
            retain_graph = true })
        assert.same({ 5, 43 }, g[1]:totable())
        -- the graph was kept: a second call works
        g = whorl.grad(y1, x, { grad_outputs = whorl.ones(2, "double") })
        assert.same({ 3, 3 }, g[1]:totable())
    end)

    it("gives zeros for an input the output does not depend on", function()
        local x, z = leaf({ 1, 2 }), leaf({ 5 })
        local g = whorl.grad((x * x):sum(), { z })
        assert.same({ 0 }, g[1]:totable())
    end)

    it("reports bad arguments", function()
        local x = leaf({ 1, 2 })
        local y = (x * x):sum()
        raises(function() whorl.grad(y, whorl.ones(2)) end, "grad: input 1 does not require grad")
        raises(function() whorl.grad(y, {}) end, "grad: inputs is an empty list")
        raises(function() whorl.grad(y, { 3 }) end, "grad: inputs[1] must be a tensor, got number")
        raises(function() whorl.grad(y, x, { grad_outputs = { x, x } }) end,
            "grad: 2 grad_outputs given for 1 outputs")
    end)
end)

describe("grad mode", function()
    it("no_grad records nothing, returns fn's results and restores the mode", function()
        local x = leaf({ 1, 2 })
        local y, extra = whorl.no_grad(function(a) return a * 2, "extra" end, x)
        assert.is_false(y.requires_grad)
        assert.is_nil(y.grad_fn)
        assert.equal("extra", extra)
        assert.is_true(whorl.is_grad_enabled())
        assert.is_true((x * 2).requires_grad)
    end)

    it("restores the mode when fn raises", function()
        local ok, err = pcall(whorl.no_grad, function() error("inside") end)
        assert.is_false(ok)
        assert.truthy(tostring(err):find("inside", 1, true))
        assert.is_true(whorl.is_grad_enabled())
    end)

    it("enable_grad records inside no_grad", function()
        local x = leaf({ 1 })
        local y = whorl.no_grad(function()
            assert.is_false(whorl.is_grad_enabled())
            return whorl.enable_grad(function() return x * 2 end)
        end)
        assert.equal("affine", y.grad_fn)
    end)

    it("set_grad_enabled returns the previous mode", function()
        assert.is_true(whorl.set_grad_enabled(false))
        assert.is_false(whorl.set_grad_enabled(true))
        assert.is_true(whorl.is_grad_enabled())
    end)
end)

describe("requires_grad and detach", function()
    it("propagates requires_grad through ops", function()
        local x = leaf({ 1 })
        local c = whorl.tensor({ 2 }, "double")
        assert.is_false(c.requires_grad)
        assert.is_false((c * c).requires_grad)
        assert.is_true((c * x).requires_grad)
        assert.equal("mul", (c * x).grad_fn)
    end)

    it("can be switched on leaves of float dtype only", function()
        local c = whorl.zeros(2, "double")
        c.requires_grad = true
        assert.is_true(c.requires_grad)
        assert.equal(c, c:requires_grad_(false))
        assert.is_false(c.requires_grad)
        c:requires_grad_()
        assert.is_true(c.requires_grad)
        raises(function() whorl.zeros(2, "byte").requires_grad = true end,
            "only float tensors can require grad, this one is uint8")
        raises(function() (c * 2).requires_grad = false end,
            "requires_grad can only be changed on leaf tensors", "'affine'")
        raises(function() c.requires_grad = 1 end, "must be set to a boolean")
    end)

    it("detach shares data without history", function()
        local x = leaf({ 1, 2 })
        local h = x * 2
        local d = h:detach()
        assert.is_false(d.requires_grad)
        assert.is_true(d.is_leaf)
        local y = (d * x):sum()
        y:backward()
        assert.same({ 2, 4 }, x.grad:totable()) -- d is a constant
        whorl.no_grad(function() d:fill_(0) end)
        assert.same({ 0, 0 }, h:totable())       -- same storage
    end)

    it("assigns a gradient only of the tensor's shape and dtype", function()
        local x = leaf({ 1, 2 })
        x.grad = whorl.tensor({ 3, 4 }, "double")
        assert.same({ 3, 4 }, x.grad:totable())
        raises(function() x.grad = whorl.ones(3, "double") end,
            "assigned gradient of shape [3] (float64) does not match the tensor's shape [2]")
    end)
end)
