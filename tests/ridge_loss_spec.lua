-- losses.Ridge: L1 between oriented ridge-filter responses.  The filters
-- are checked against what they are for (a grating across the filter gives
-- 1, a flat image 0, a grating along it ~0), the loss by finite differences,
-- and the shift it penalises more than pixel L1 does.
local whorl = require "whorl"
local losses = require "whorl.losses"
local gradcheck = require "helpers.gradcheck"
local check = require "helpers.check"
local raises = check.raises

-- cos(2 pi (x cos t + y sin t) / period) on an h x w grid, (1, 1, h, w) float64.
local function grating(h, w, period, theta, phase)
    local v = {}
    for y = 0, h - 1 do
        for x = 0, w - 1 do
            v[#v + 1] = math.cos(2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / period + (phase or 0))
        end
    end
    return whorl.tensor(v, "float64"):view(1, 1, h, w)
end

describe("losses.Ridge", function()
    it("answers 1 to a unit grating across a filter, 0 to a flat image", function()
        local r = losses.ridge_responses(grating(40, 40, 9, 0), { period = 9 })
        -- the filter at angle 0 (first channel) reads the grating whole
        local first = r:narrow(2, 1, 1)
        assert.is_true(math.abs(first:max():item() - 1) < 1e-9, "peak " .. first:max():item())
        -- the filter at 90 degrees (channel 5 of 8) runs along the ridges: nothing
        assert.is_true(r:narrow(2, 5, 1):abs():max():item() < 0.02)
        local flat = whorl.full({ 1, 1, 40, 40 }, 0.7, { dtype = "float64" })
        assert.is_true(losses.ridge_responses(flat, { period = 9 }):abs():max():item() < 1e-12)
        assert.are.same({ 1, 8, 40 - 22, 40 - 22 }, r:size())
    end)

    it("is 0 for identical images and grows as the ridges shift", function()
        local loss = losses.Ridge{ period = 6 }
        local a = grating(30, 30, 6, 0.3)
        assert.are.equal(0, loss(a, a):item())
        local quarter = loss(a, grating(30, 30, 6, 0.3, math.pi / 2)):item()
        local half = loss(a, grating(30, 30, 6, 0.3, math.pi)):item()
        assert.is_true(quarter > 0.1 and half > quarter * 1.2, ("quarter %.3f half %.3f"):format(quarter, half))
        -- a grey-level change that keeps the ridges where they are costs little:
        -- a gain of 0.9 against a quarter-period shift
        local dimmer = loss(a, a * 0.9 + 0.05):item()
        assert.is_true(dimmer < 0.25 * quarter, ("gain %.3f, shift %.3f"):format(dimmer, quarter))
    end)

    it("has the gradient of its finite differences, with and without weights", function()
        local loss = losses.Ridge{ period = 4, orientations = 4 }
        whorl.manual_seed(5)
        local p = whorl.rand({ 2, 1, 14, 14 }, { dtype = "float64" }):requires_grad_()
        local t = whorl.rand({ 2, 1, 14, 14 }, { dtype = "float64" })
        local w = whorl.rand({ 2, 1, 14, 14 }, { dtype = "float64" })
        assert.is_true(gradcheck(function(x) return loss(x, t) end, { p }, { name = "Ridge" }))
        assert.is_true(gradcheck(function(x) return loss(x, t, w) end, { p }, { name = "Ridge weighted" }))
    end)

    it("weights a position by its window's centre pixel", function()
        local loss = losses.Ridge{ period = 4 }
        local a, b = whorl.rand({ 1, 1, 20, 20 }, { dtype = "float64" }), whorl.rand({ 1, 1, 20, 20 }, { dtype = "float64" })
        local ones = whorl.ones({ 1, 1, 20, 20 }, { dtype = "float64" })
        assert.is_true(math.abs(loss(a, b, ones):item() - loss(a, b):item()) < 1e-12)
        assert.are.equal(0, loss(a, b, ones * 0):item())
    end)

    it("survives config round trips and names bad options", function()
        local loss = losses.Ridge{ period = 5, orientations = 6 }
        local again = losses.from_config(loss:config())
        local a, b = whorl.rand({ 1, 1, 24, 24 }), whorl.rand({ 1, 1, 24, 24 })
        assert.are.equal(loss(a, b):item(), again(a, b):item())
        raises(function() losses.Ridge{ period = 1 } end, "period must be")
        raises(function() losses.Ridge{ orientations = 2.5 } end, "orientations must be")
        raises(function() losses.Ridge{ width = 3 } end, "unknown option 'width'")
        raises(function() losses.Ridge{ period = 9 }(whorl.rand({ 1, 1, 10, 10 }), whorl.rand({ 1, 1, 10, 10 })) end,
            "at least 23x23")
    end)
end)
