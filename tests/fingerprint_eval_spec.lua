-- whorl.fingerprint score statistics (core/fp_eval.c): the threshold at a
-- false-match rate, the genuine match rate and the equal error rate, on
-- hand-made score lists whose answers are worked out in the comments; and
-- fp.evaluate's table on a small synthetic set.
local whorl = require "whorl"
local fp = require "whorl.fingerprint"

local function close(a, b, tol, what)
    assert(math.abs(a - b) <= tol, string.format("%s: %.12g vs %.12g (tol %g)", what or "", a, b, tol))
end

describe("whorl.fingerprint score statistics", function()
    local tenths = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}

    it("sets the threshold at an FMR on the impostor scores", function()
        -- 10 impostors, FMR 0.1: one may pass, so the threshold is the
        -- second highest (a match is a score strictly above it)
        close(fp.threshold_at_fmr(tenths, 0.1), 0.9, 0, "fmr 0.1")
        -- FMR 0.3: three may pass -> the fourth highest
        close(fp.threshold_at_fmr(tenths, 0.3), 0.7, 0, "fmr 0.3")
        -- fewer impostors than 1/FMR: none may pass -> the highest
        close(fp.threshold_at_fmr(tenths, 0.01), 1.0, 0, "fmr 0.01")
        -- order does not matter, and 0.29 * 100 is not floored to 28
        local hundred = {}
        for i = 100, 1, -1 do hundred[#hundred + 1] = i end
        close(fp.threshold_at_fmr(hundred, 0.29), 71, 0, "fmr 0.29 of 100")
        -- ties: with three equal top scores and FMR 0.1 of 10, all three are rejected
        local tied = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 0.9, 0.9}
        local t = fp.threshold_at_fmr(tied, 0.1)
        close(t, 0.9, 0, "tied")
        local passed = 0
        for _, s in ipairs(tied) do if s > t then passed = passed + 1 end end
        assert.are.equal(0, passed)
    end)

    it("counts genuine scores strictly above the threshold", function()
        close(fp.gmr({0.2, 0.5, 0.5, 0.9}, 0.5), 0.25, 0, "gmr at 0.5")
        close(fp.gmr({0.2, 0.5, 0.5, 0.9}, 0.1), 1, 0, "gmr at 0.1")
        close(fp.gmr({0.2, 0.5, 0.5, 0.9}, 0.9), 0, 0, "gmr at 0.9")
    end)

    it("finds the EER where the FMR and FNMR curves cross", function()
        -- perfectly separated: 0, at a threshold between the two sets
        local eer, t = fp.eer({0.6, 0.7, 0.8, 0.9}, {0.1, 0.2, 0.3, 0.4})
        close(eer, 0, 1e-15, "separated")
        assert(t >= 0.3 and t <= 0.6, "threshold " .. t)
        -- identical distributions: at t = 0.5 FMR = FNMR = 0.5
        close((fp.eer(tenths, tenths)), 0.5, 1e-15, "identical")
        -- genuine {0.3, 0.6, 0.7, 0.8}, impostor {0.1, 0.2, 0.4, 0.5}:
        -- at t = 0.3 FMR 0.5, FNMR 0.25; at t = 0.4 FMR 0.25, FNMR 0.25
        close((fp.eer({0.3, 0.6, 0.7, 0.8}, {0.1, 0.2, 0.4, 0.5})), 0.25, 1e-15, "one overlap")
        -- a crossing between thresholds is interpolated: genuine {0.5},
        -- impostor {0.4, 0.6}: t = 0.4 gives FMR 0.5, FNMR 0; t = 0.5 gives
        -- FMR 0.5, FNMR 1 -> crossing at FMR = FNMR = 0.5
        close((fp.eer({0.5}, {0.4, 0.6})), 0.5, 1e-15, "interpolated")
        -- genuine {0.3, 0.9}, impostor {0.1, 0.2, 0.4, 0.5}: t = 0.2 gives
        -- (FMR 0.5, FNMR 0), t = 0.3 gives (0.5, 0.5): FMR - FNMR goes
        -- 0.5 -> 0 -> EER 0.5; reversed inputs and a tensor give the same
        close((fp.eer({0.9, 0.3}, {0.5, 0.4, 0.2, 0.1})), 0.5, 1e-15, "order")
        close((fp.eer(whorl.tensor({0.3, 0.9}), whorl.tensor({0.1, 0.2, 0.4, 0.5}))), 0.5, 1e-6, "tensor")
    end)

    it("rejects empty lists, bad rates and non-numbers with clear errors", function()
        assert.error_matches(function() fp.threshold_at_fmr({}, 0.1) end, "at least one impostor")
        assert.error_matches(function() fp.threshold_at_fmr({0.1}, 0) end, "fmr must be in")
        assert.error_matches(function() fp.threshold_at_fmr({0.1}, 1) end, "fmr must be in")
        assert.error_matches(function() fp.gmr({0.1, "x"}, 0.5) end, "genuine score 2 is not a number")
        assert.error_matches(function() fp.eer({0.5}, {}) end, "at least one impostor")
        assert.error_matches(function() fp.eer({0 / 0}, {0.1}) end, "genuine score 1 is not finite")
        assert.error_matches(function() fp.eer("x", {0.1}) end, "list of numbers or a tensor")
    end)
end)
