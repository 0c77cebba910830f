-- whorl.fingerprint extraction (core/fp_*.c): minutiae of hand-drawn ridge
-- patterns found at the right place, type and direction; precision and
-- recall against whorl.synth's ground truth; the orientation field against
-- the generator's; fields and their shapes; batch = one by one; pairing;
-- blank prints; errors.
local whorl = require "whorl"
local fp = whorl.fingerprint

-- Horizontal ridges of period T, half a period thick, ridges dark.  Ridge 0
-- (through y = ey) stops at x = ex and its neighbours close the gap over two
-- periods: a ridge ending at (ex, ey) pointing +x (away from its ridge).
-- invert swaps ridges and valleys: valley 0 stops there, so the two ridges
-- beside it merge into one running on to +x: a bifurcation whose stem points
-- +x.  0-based pixel coordinates, as fp.extract's.
local function ending_pattern(S, T, ex, ey, invert)
    local v = {}
    for y = 0, S - 1 do
        for x = 0, S - 1 do
            local t = math.min(math.max((x - ex) / (2 * T), 0), 1)
            local b, best = t * t * (3 - 2 * t), math.huge
            for k = -12, 12 do
                local cy = ey + k * T + (k > 0 and -1 or k < 0 and 1 or 0) * T / 2 * b
                local d = math.abs(y - cy)
                if k == 0 and x > ex then d = math.sqrt((x - ex) ^ 2 + (y - cy) ^ 2) end
                best = math.min(best, d)
            end
            local bright = math.min(math.max((best - T / 4) / 1.5 + 0.5, 0), 1)
            if invert then bright = 1 - bright end
            v[#v + 1] = 0.1 + 0.8 * bright
        end
    end
    return whorl.tensor(v):view(S, S)
end

local function angle_gap(a, b) -- in [0, pi]
    local d = math.abs(a - b) % (2 * math.pi)
    return d > math.pi and 2 * math.pi - d or d
end

-- whorl.synth's info minutiae (1-based) in fp.extract's frame (0-based).
local function truth(info)
    local out = {}
    for _, m in ipairs(info.minutiae) do
        out[#out + 1] = { x = m.x - 1, y = m.y - 1, angle = m.angle, type = m.type }
    end
    return out
end

-- Precision and recall of templates against the infos' ground truth: a
-- true minutia counts as found when an extracted one lies within `distance`
-- px with a direction within 30 degrees (modulo 180: the generator gives a
-- bifurcation's axis only); true minutiae closer than `border` to the edge
-- of a size x size image are left out.  Also how many true minutiae, and
-- the fraction of pairs of the same type.
local function score(templates, infos, size, border, distance)
    local matched, extracted, wanted, same_type = 0, 0, 0, 0
    for i, t in ipairs(templates) do
        local gt = {}
        for _, m in ipairs(truth(infos[i])) do
            if m.x >= border and m.y >= border and m.x < size - border and m.y < size - border then
                gt[#gt + 1] = m
            end
        end
        local r = fp.pair(t.minutiae, gt, { distance = distance, angle = math.rad(30), axial = true })
        matched, extracted, wanted = matched + r.matched, extracted + r.a_count, wanted + r.b_count
        for _, p in ipairs(r.pairs) do
            if t.minutiae[p[1]].type == gt[p[2]].type then same_type = same_type + 1 end
        end
    end
    return matched / extracted, matched / wanted, wanted, same_type / matched
end

describe("fingerprint.extract on drawn patterns", function()
    for _, case in ipairs {
        { invert = false, type = "ending" },
        { invert = true, type = "bifurcation" },
    } do
        for _, T in ipairs { 8, 10 } do
            it(("finds one %s at its place and direction (period %d, also transposed)"):format(case.type, T),
                function()
                    local img = ending_pattern(128, T, 64, 63.5, case.invert)
                    for _, transposed in ipairs { false, true } do
                        local im = transposed and img:transpose(1, 2):contiguous() or img
                        local t = fp.extract(im)
                        assert.are.equal(1, #t.minutiae)
                        local m = t.minutiae[1]
                        assert.are.equal(case.type, m.type)
                        -- the ending at the drawn tip (the ridge's round end
                        -- reaches a quarter period beyond ex), the bifurcation
                        -- where the two ridges have merged, within a period
                        local along, across = m.x - 64, m.y - 63.5
                        local want = 0
                        if transposed then along, across, want = m.y - 64, m.x - 63.5, math.pi / 2 end
                        assert.is_true(along >= 0 and along <= T + 2, "along " .. along)
                        assert.is_true(math.abs(across) <= 2, "across " .. across)
                        assert.is_true(angle_gap(m.angle, want) < math.rad(10), "angle " .. math.deg(m.angle))
                        assert.is_true(m.quality > 0.5 and m.quality <= 1)
                    end
                end)
        end
    end

    it("finds none on plain parallel ridges", function()
        local v = {}
        for y = 0, 95 do
            for x = 0, 95 do v[#v + 1] = 0.5 + 0.4 * math.cos(2 * math.pi * (x + 0.3 * y) / 9) end
        end
        assert.are.equal(0, #fp.extract(whorl.tensor(v):view(96, 96)).minutiae)
    end)
end)

describe("fingerprint.extract on synthetic prints", function()
    -- Six 256x256 prints at 500 dpi (about 35 true minutiae each), scored
    -- within 12 px, true minutiae within the extractor's border (12 px) of
    -- the image edge left out.  Measured (this seed):
    -- precision 0.88, recall 0.85 (163 true minutiae).
    local images, infos = whorl.synth.batch { count = 6, size = 256, dpi = 500, seed = 11 }
    local templates

    it("reaches the stated precision and recall against the ground truth", function()
        templates = fp.extract_batch(images)
        local precision, recall, wanted, same_type = score(templates, infos, 256, 12, 12)
        assert.is_true(wanted > 150, "ground truth " .. wanted)
        assert.is_true(precision > 0.82, "precision " .. precision)
        assert.is_true(recall > 0.8, "recall " .. recall)
        assert.is_true(same_type > 0.7, "same type " .. same_type)
    end)

    it("points endings the generator's way", function()
        -- endings' directions are not ambiguous: within 30 degrees modulo 360
        local ok, n = 0, 0
        for i, t in ipairs(templates or fp.extract_batch(images)) do
            local ends, gt = {}, {}
            for _, m in ipairs(t.minutiae) do if m.type == "ending" then ends[#ends + 1] = m end end
            for _, m in ipairs(truth(infos[i])) do if m.type == "ending" then gt[#gt + 1] = m end end
            local loose = fp.pair(ends, gt, { distance = 12, angle = math.pi })
            local strict = fp.pair(ends, gt, { distance = 12, angle = math.rad(30) })
            ok, n = ok + strict.matched, n + loose.matched
        end
        assert.is_true(n > 40 and ok / n > 0.9, ("%d of %d"):format(ok, n))
    end)

    it("keeps noise in the background out of the print (hard noise damage)", function()
        -- the mask needs coherent ridges, not just variance: measured on these
        -- six prints, gaussian_noise hard precision 0.87 recall 0.82,
        -- salt_pepper hard 0.91 / 0.83 (before that rule: precision about 0.3)
        for _, kind in ipairs { "gaussian_noise", "salt_pepper" } do
            local damaged = whorl.synth.damage(images, kind, { level = "hard", seed = 1 })
            local precision, recall = score(fp.extract_batch(damaged), infos, 256, 12, 12)
            assert.is_true(precision > 0.8, kind .. " precision " .. precision)
            assert.is_true(recall > 0.75, kind .. " recall " .. recall)
        end
    end)

    it("batch gives what one by one gives", function()
        local batch = templates or fp.extract_batch(images)
        for i = 1, 2 do
            local one = fp.extract(images[i][1])
            assert.are.same(one.minutiae, batch[i].minutiae)
            assert.are.equal(256, one.height)
            assert.are.equal(256, one.width)
        end
    end)

    it("has the generator's orientation field over the foreground", function()
        local img, info = whorl.synth.fingerprint { size = 192, dpi = 500, seed = 5, fields = true }
        local t = fp.extract(img, { fields = true })
        local est, tru = t.orientation:double():totable(), info.orientation:double():totable()
        local m1, m2 = t.mask:totable(), info.mask:totable()
        local sum, n, close = 0, 0, 0
        for y = 1, 192 do
            for x = 1, 192 do
                if m1[y][x] > 0.5 and m2[y][x] > 0.5 then
                    local d = math.abs(est[y][x] - tru[y][x]) % math.pi
                    d = math.min(d, math.pi - d)
                    sum, n = sum + d, n + 1
                    if d < math.rad(10) then close = close + 1 end
                end
            end
        end
        assert.is_true(n > 192 * 192 / 2, "foreground " .. n)
        -- measured 2.4 degrees on average
        assert.is_true(math.deg(sum / n) < 4, "mean error " .. math.deg(sum / n))
        assert.is_true(close / n > 0.9, "within 10 degrees " .. close / n)
    end)
end)

describe("fingerprint.extract at low resolution", function()
    -- Twelve 96x96 prints at 250 dpi (periods near 4.5 px), tolerance 6 px
    -- and 30 degrees, true minutiae within 6 px of the edge left out.
    -- Measured: extracted at twice the size (automatic below 350 dpi)
    -- precision 0.88, recall 0.83; at their own size 0.85 / 0.80.
    local images, infos = whorl.synth.batch { count = 12, size = 96, dpi = 250, seed = 11 }
    it("is extracted at twice the size, which finds more of the true minutiae", function()
        local auto = fp.extract_batch(images, { dpi = 250 })
        assert.are.same(auto, fp.extract_batch(images, { dpi = 250, upsample = true }))
        local p2, r2 = score(auto, infos, 96, 6, 6)
        local p1, r1 = score(fp.extract_batch(images, { dpi = 250, upsample = false }), infos, 96, 6, 6)
        assert.is_true(p2 > 0.82 and r2 > 0.78, ("doubled: precision %.3f recall %.3f"):format(p2, r2))
        assert.is_true(r2 > r1 and p2 > p1, ("own size: precision %.3f recall %.3f"):format(p1, r1))
    end)

    it("returns fields and coordinates at the input's size", function()
        local t = fp.extract(images[1][1], { dpi = 250, fields = true })
        assert.are.equal(96, t.height)
        for _, name in ipairs { "enhanced", "orientation", "frequency", "mask", "skeleton" } do
            assert.are.same({ 96, 96 }, t[name]:size(), name)
        end
        -- frequency per input pixel: periods of 2.5 to 7.5 px at 250 dpi
        local fmax = t.frequency:max():item()
        assert.is_true(fmax <= 1 / 2.5 + 1e-6 and fmax >= 1 / 7.5, "frequency " .. fmax)
        assert.is_true(#t.minutiae > 3)
        for _, m in ipairs(t.minutiae) do
            assert.is_true(m.x >= 0 and m.x <= 95 and m.y >= 0 and m.y <= 95)
        end
        assert.has_error(function() fp.extract(images[1][1], { upsample = 2 }) end,
            "fingerprint.extract: option 'upsample' must be true, false or nil (automatic), got number")
    end)
end)

describe("fingerprint.extract fields", function()
    it("returns (H, W) maps with values in their ranges", function()
        local img, info = whorl.synth.fingerprint { size = { 96, 128 }, dpi = 500, seed = 2, fields = true }
        local t = fp.extract(img, { fields = true })
        assert.are.equal(96, t.height)
        assert.are.equal(128, t.width)
        for _, name in ipairs { "enhanced", "orientation", "frequency", "mask", "skeleton" } do
            local f = t[name]
            assert.are.same({ 96, 128 }, f:size(), name)
            assert.are.equal("float32", f:dtype())
        end
        assert.is_true((-t.orientation):max():item() <= 0 and t.orientation:max():item() < math.pi)
        local fmax = t.frequency:max():item()
        assert.is_true(fmax <= 1 / 5 + 1e-6 and fmax >= 1 / 15, "frequency " .. fmax)
        for _, name in ipairs { "enhanced", "mask", "skeleton" } do
            local f = t[name]
            local off = f * (f - 1) -- 0 exactly where f is 0 or 1
            assert.are.equal(0, (off * off):sum():item(), name .. " is 0/1")
        end
        -- the mask covers the finger (the generator's foreground) and little else
        local finger = ((info.mask - 0.5) * 1e9):clamp(0, 1) -- 1 where the mask is over a half
        assert.is_true((t.mask * finger):sum():item() > 0.95 * finger:sum():item())
        assert.is_true(t.mask:mean():item() < 0.9)
        -- the skeleton lies on the enhanced ridges, inside the mask
        assert.are.equal(0, (t.skeleton - t.enhanced):clamp(0, 1):sum():item())
        assert.are.equal(0, (t.skeleton - t.mask):clamp(0, 1):sum():item())
        for _, m in ipairs(t.minutiae) do
            assert.is_true(m.x >= 0 and m.x < 128 and m.y >= 0 and m.y < 96)
            assert.is_true(m.angle >= 0 and m.angle < 2 * math.pi)
            assert.is_true(m.type == "ending" or m.type == "bifurcation")
            assert.is_true(m.quality >= 0 and m.quality <= 1)
        end
        -- without fields: only the minutiae and the size
        local plain = fp.extract(img)
        assert.is_nil(plain.mask)
        assert.are.same(t.minutiae, plain.minutiae)
    end)

    it("accepts (1, H, W) and float64, and a dpi that scales the periods", function()
        local img = whorl.synth.fingerprint { size = 160, dpi = 400, seed = 4 }
        local a = fp.extract(img, { dpi = 400 })
        assert.are.same(a.minutiae, fp.extract(img:view(1, 160, 160), { dpi = 400 }).minutiae)
        assert.are.same(a.minutiae, fp.extract(img:double(), { dpi = 400 }).minutiae)
        assert.is_true(#a.minutiae > 5)
    end)

    it("finds nothing in blank, black and flat images", function()
        for _, v in ipairs { 0, 1, 0.5 } do
            local t = fp.extract(whorl.full({ 64, 80 }, v), { fields = true })
            assert.are.equal(0, #t.minutiae)
            assert.are.equal(0, t.mask:sum():item())
        end
        local faint = whorl.full({ 64, 64 }, 0.5) + whorl.rand(64, 64) * 0.001
        assert.are.equal(0, #fp.extract(faint).minutiae)
    end)
end)

describe("fingerprint.pair", function()
    local a = { { x = 10, y = 10, angle = 0.1 }, { x = 50, y = 50, angle = 3 }, { x = 90, y = 20, angle = 1 } }
    local b = { { x = 12, y = 11, angle = 6.2 }, { x = 51, y = 49, angle = 3 + math.pi }, { x = 200, y = 0, angle = 0 } }

    it("pairs one to one within the distance and angle", function()
        local r = fp.pair(a, b)
        assert.are.same({ { 1, 1 } }, r.pairs) -- angles 0.1 and 6.2 are 0.18 rad apart
        assert.are.equal(1, r.matched)
        assert.are.equal(3, r.a_count)
        assert.are.equal(3, r.b_count)
        assert.is_near(1 / 3, r.precision, 1e-12)
        assert.is_near(1 / 3, r.recall, 1e-12)
        local axial = fp.pair(a, b, { axial = true }) -- the second pair differs by pi
        assert.are.same({ { 1, 1 }, { 2, 2 } }, axial.pairs)
        assert.are.equal(0, fp.pair(a, b, { distance = 1 }).matched)
    end)

    it("takes the cheapest candidates first, each minutia once", function()
        local one = { { x = 0, y = 0, angle = 0 } }
        local two = { { x = 5, y = 0, angle = 0 }, { x = 1, y = 0, angle = 0 } }
        local r = fp.pair(one, two)
        assert.are.same({ { 1, 2 } }, r.pairs)
        assert.are.equal(1, r.precision)
        assert.are.equal(0.5, r.recall)
        local r2 = fp.pair(two, one)
        assert.are.same({ { 2, 1 } }, r2.pairs)
    end)

    it("pairs a template with itself completely; empty sets give 1", function()
        local t = fp.extract((whorl.synth.fingerprint { size = 128, seed = 9 }))
        local r = fp.pair(t.minutiae, t.minutiae)
        assert.are.equal(#t.minutiae, r.matched)
        for k, p in ipairs(r.pairs) do assert.are.equal(p[1], p[2], "pair " .. k) end
        local e = fp.pair({}, {})
        assert.are.same({}, e.pairs)
        assert.are.equal(1, e.precision)
        assert.are.equal(1, e.recall)
        assert.are.equal(0, fp.pair({}, a).recall)
    end)

    it("rejects bad minutiae and options", function()
        assert.has_error(function() fp.pair(a, "x") end, "fingerprint.pair: argument 2 must be a list of minutiae, got string")
        assert.has_error(function() fp.pair({ { x = 1, y = 2 } }, b) end,
            "fingerprint.pair: argument 1: minutia 1 has no finite number 'angle'")
        assert.has_error(function() fp.pair(a, b, { distance = 0 }) end)
        assert.has_error(function() fp.pair(a, b, { radius = 3 }) end)
    end)
end)

describe("fingerprint.extract errors", function()
    it("names the problem", function()
        assert.has_error(function() fp.extract(whorl.zeros(31, 64)) end,
            "fingerprint.extract: image must be at least 32x32 pixels (and at most 32768), got [31, 64]")
        assert.has_error(function() fp.extract(whorl.zeros(2, 64, 64)) end,
            "fingerprint.extract: image must be (H, W) or (1, H, W), got [2, 64, 64]")
        assert.has_error(function() fp.extract(whorl.zeros(64)) end)
        assert.has_error(function() fp.extract(whorl.zeros({ 64, 64 }, { dtype = "uint8" })) end)
        local nan = whorl.zeros(40, 40)
        nan[3][5] = 0 / 0
        assert.has_error(function() fp.extract(nan) end, "fingerprint.extract: pixel (2, 4) is not finite")
        assert.has_error(function() fp.extract(whorl.zeros(40, 40), { dpi = -1 }) end,
            "fingerprint.extract: option 'dpi' must be from 50 to 5000, got -1.0")
        assert.has_error(function() fp.extract(whorl.zeros(40, 40), { sigma = 1 }) end)
        assert.has_error(function() fp.extract(whorl.zeros(40, 40), { block = 2 }) end,
            "fingerprint.extract: block must be 4 to 256 pixels, got 2")
        assert.has_error(function() fp.extract_batch(whorl.zeros(40, 40)) end,
            "fingerprint.extract_batch: images must be (N, H, W) or (N, 1, H, W), got [40, 40]")
        assert.has_error(function() fp.extract_batch(whorl.zeros(2, 40, 40), { fields = true }) end,
            "fingerprint.extract_batch: option 'fields' is only for fp.extract")
        local bad = whorl.zeros(3, 40, 40)
        bad[2][1][1] = math.huge
        assert.has_error(function() fp.extract_batch(bad) end,
            "fingerprint.extract: pixel (0, 0) is not finite (image 2 of the batch)")
    end)
end)
