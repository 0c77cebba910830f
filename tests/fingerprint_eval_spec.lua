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

    describe("fp.evaluate", function()
        local FINGERS, IMPRESSIONS, SIZE = 8, 2, 256
        local result
        local function evaluate()
            if result then return result end
            local clean, infos = whorl.synth.batch{count = FINGERS * IMPRESSIONS, impressions = IMPRESSIONS,
                                                   size = SIZE, dpi = 500, seed = 11}
            local damaged = whorl.synth.damage(clean, {"obliteration", "erasure", "partial"},
                                               {level = "hard", seed = 5})
            local fingers = {}
            for i, info in ipairs(infos) do fingers[i] = info.finger end
            -- "restored" = the clean prints themselves: a perfect restoration
            result = fp.evaluate{clean = clean, damaged = damaged, restored = clean, fingers = fingers,
                                 dpi = 500, same_finger = true}
            return result
        end

        it("returns the documented fields with sane values", function()
            local r = evaluate()
            assert.are.equal(FINGERS * IMPRESSIONS, r.n)
            -- impostors: first impressions of the 8 fingers, each against the 7 others
            assert.are.equal(FINGERS * (FINGERS - 1), r.impostor.count)
            -- genuine: each image with its own clean copy and the finger's other impression
            assert.are.equal(FINGERS * IMPRESSIONS * IMPRESSIONS, r.genuine.restored.count)
            for _, side in ipairs{"damaged", "restored"} do
                assert(r.genuine[side].mean >= 0 and r.genuine[side].mean <= 1)
                assert(r.eer[side] >= 0 and r.eer[side] <= 1)
                for _, key in ipairs{"0.01", "0.001"} do
                    local g = r.gmr[side][key]
                    assert(g >= 0 and g <= 1, side .. " gmr " .. key)
                end
                local m = r.minutiae[side]
                assert(m.precision >= 0 and m.precision <= 1 and m.recall >= 0 and m.recall <= 1)
            end
            assert(r.impostor.mean >= 0 and r.impostor.mean < 0.2, "impostor mean " .. r.impostor.mean)
            assert(r.impostor.damaged.mean >= 0 and r.impostor.damaged.mean < 0.2)
            assert(type(r.thresholds["0.01"]) == "number" and type(r.thresholds["0.001"]) == "number")
            assert(r.thresholds["0.001"] >= r.thresholds["0.01"])
            assert(r.seconds > 0)
            assert(r.clean.minutiae > 10, "minutiae per clean print " .. r.clean.minutiae)
            close(r.clean.matchable, 1, 0, "matchable")
        end)

        it("scores heavy damage below a perfect restoration", function()
            local r = evaluate()
            -- a perfect restoration: same minutiae as clean, genuine scores near 1 and no errors
            close(r.minutiae.restored.precision, 1, 0, "restored precision")
            close(r.minutiae.restored.recall, 1, 0, "restored recall")
            close(r.eer.restored, 0, 0, "restored eer")
            close(r.gmr.restored["0.01"], 1, 0, "restored gmr")
            assert(r.genuine.damaged.mean < r.genuine.restored.mean - 0.1,
                   ("damaged %.3f vs restored %.3f"):format(r.genuine.damaged.mean, r.genuine.restored.mean))
            assert(r.minutiae.damaged.precision < 1 or r.minutiae.damaged.recall < 1)
        end)

        it("lists each genuine score with scores = true, in image order", function()
            local clean = whorl.synth.batch{count = 4, size = 128, dpi = 500, seed = 12, info = false}
            local damaged = whorl.synth.damage(clean, {"erasure", "smudge"}, {level = "hard", seed = 6})
            local opts = {clean = clean, damaged = damaged, restored = clean, dpi = 500}
            local plain = fp.evaluate(opts)
            assert.is_nil(plain.genuine.damaged.scores)
            opts.scores = true
            local r = fp.evaluate(opts)
            for _, side in ipairs{"damaged", "restored"} do
                local scores = r.genuine[side].scores
                assert.are.equal(4, #scores)
                local sum = 0
                for _, v in ipairs(scores) do sum = sum + v end
                close(sum / 4, r.genuine[side].mean, 1e-12, side .. " mean of the scores")
            end
            -- in image order: damage only prints 3 and 4, and only their scores drop
            opts.damaged = whorl.cat({clean:narrow(1, 1, 2), damaged:narrow(1, 3, 2)}, 1)
            r = fp.evaluate(opts)
            local d, c = r.genuine.damaged.scores, r.genuine.restored.scores
            close(d[1], c[1], 0, "undamaged print 1")
            close(d[2], c[2], 0, "undamaged print 2")
            assert(d[3] < c[3] - 0.05 and d[4] < c[4] - 0.05,
                   ("damaged prints 3, 4: %.3f, %.3f against %.3f, %.3f"):format(d[3], d[4], c[3], c[4]))
        end)

        it("takes templates instead of images, and checks its options", function()
            local t = {minutiae = {}}
            local img = whorl.zeros({2, 32, 32})
            local r = fp.evaluate{clean = img, restored = img, templates = {clean = {t, t}, restored = {t, t}}}
            assert.are.equal(0, r.genuine.restored.mean)
            assert.are.same({minutiae = 0, matchable = 0}, r.clean)
            assert.is_nil(r.genuine.damaged)
            assert.error_matches(function() fp.evaluate{clean = img} end, "give 'damaged', 'restored'")
            assert.error_matches(function() fp.evaluate{clean = img, restored = whorl.zeros({3, 32, 32})} end,
                                 "'restored' has 3 images, 'clean' 2")
            assert.error_matches(function() fp.evaluate{clean = img, restored = img, fmr = {2}} end,
                                 "each 'fmr' must be")
            assert.error_matches(function() fp.evaluate{clean = img, restored = img, colour = 1} end,
                                 "unknown option 'colour'")
            assert.error_matches(function()
                fp.evaluate{clean = img, restored = img, fingers = {1, 1},
                            templates = {clean = {t, t}, restored = {t, t}}}
            end, "at least two different fingers")
        end)
    end)
end)
