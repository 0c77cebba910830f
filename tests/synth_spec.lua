-- whorl.synth: synthetic fingerprints.  Determinism by seed; shapes at any
-- size and dpi; fingerprint-likeness by measurement (the dominant ridge
-- period by a DFT, the orientation field from the image's gradients);
-- class frequencies; impressions of one finger; minutiae; errors.
local whorl = require "whorl"
local synth = whorl.synth

-- ---- measurements ---------------------------------------------------------

-- Dominant ridge period of img (h, w) inside mask (h, w): the mean-free
-- foreground (the soft mask is the window) goes through a 2-D DFT over
-- frequencies up to 1 / pmin, as matrix products; the ring of largest power
-- between 1 / pmax and 1 / pmin is the peak, and the power-weighted mean
-- frequency of the band around it (0.6 to 1.6 times) gives the period:
-- periods vary over a print and the requested one is their mean.
local function dominant_period(img, mask, pmin, pmax)
    local h, w = img:size()[1], img:size()[2]
    local g, m = img:double():totable(), mask:double():totable()
    local s, c = 0, 0
    for y = 1, h do
        for x = 1, w do
            s, c = s + g[y][x] * m[y][x], c + m[y][x]
        end
    end
    local data = {}
    for y = 1, h do
        local row = {}
        for x = 1, w do row[x] = (g[y][x] - s / c) * m[y][x] end
        data[y] = row
    end
    local G = whorl.tensor(data, { dtype = "float64" })
    local n = math.max(h, w)
    local steps = math.ceil(2 * n / pmin) -- frequency k / (2n), k = -steps..steps
    local function basis(len)
        local cs, sn = {}, {}
        for k = -steps, steps do
            local rc, rs = {}, {}
            for t = 1, len do
                rc[t] = math.cos(math.pi * k * t / n)
                rs[t] = math.sin(math.pi * k * t / n)
            end
            cs[#cs + 1], sn[#sn + 1] = rc, rs
        end
        return whorl.tensor(cs, { dtype = "float64" }), whorl.tensor(sn, { dtype = "float64" })
    end
    local Cy, Sy = basis(h)
    local Cx, Sx = basis(w)
    local GC, GS = whorl.matmul(G, Cx:t()), whorl.matmul(G, Sx:t())
    local re = whorl.matmul(Cy, GC) - whorl.matmul(Sy, GS)
    local im = whorl.matmul(Sy, GC) + whorl.matmul(Cy, GS)
    local power = (re * re + im * im):totable()
    local ring = {}
    for i = 1, 2 * steps + 1 do
        for j = 1, 2 * steps + 1 do
            local r = math.floor(math.sqrt((i - steps - 1) ^ 2 + (j - steps - 1) ^ 2) + 0.5)
            ring[r] = (ring[r] or 0) + power[i][j]
        end
    end
    local best, peak = -1, nil
    for r, p in pairs(ring) do
        if r >= 2 * n / pmax and r <= 2 * n / pmin and p > best then best, peak = p, r end
    end
    local num, den = 0, 0
    for r, p in pairs(ring) do
        if r >= 0.6 * peak and r <= 1.6 * peak then num, den = num + p * r, den + p end
    end
    return 2 * n / (num / den)
end

-- Ridge orientation estimated from the image: the gradient structure tensor
-- (central differences) summed over a (2r+1)^2 box by integral images, its
-- doubled angle giving the gradient direction; ridges run across it.
-- Returns a function (x, y) -> angle in [0, pi) (1-based pixels).
local function orientation_estimator(img, r)
    local h, w = img:size()[1], img:size()[2]
    local g = img:double():totable()
    local xx, yy, xy = {}, {}, {}
    for y = 0, h do
        xx[y], yy[y], xy[y] = {}, {}, {}
        for x = 0, w do xx[y][x], yy[y][x], xy[y][x] = 0, 0, 0 end
    end
    for y = 1, h do
        for x = 1, w do
            local gx = (g[y][math.min(x + 1, w)] - g[y][math.max(x - 1, 1)]) / 2
            local gy = (g[math.min(y + 1, h)][x] - g[math.max(y - 1, 1)][x]) / 2
            xx[y][x] = gx * gx + xx[y - 1][x] + xx[y][x - 1] - xx[y - 1][x - 1]
            yy[y][x] = gy * gy + yy[y - 1][x] + yy[y][x - 1] - yy[y - 1][x - 1]
            xy[y][x] = gx * gy + xy[y - 1][x] + xy[y][x - 1] - xy[y - 1][x - 1]
        end
    end
    local function box(t, x, y)
        local x0, x1 = math.max(x - r - 1, 0), math.min(x + r, w)
        local y0, y1 = math.max(y - r - 1, 0), math.min(y + r, h)
        return t[y1][x1] - t[y0][x1] - t[y1][x0] + t[y0][x0]
    end
    return function(x, y)
        local a, b, c = box(xx, x, y), box(yy, x, y), box(xy, x, y)
        return (0.5 * math.atan(2 * c, a - b) + math.pi / 2) % math.pi
    end
end

local function angle_diff(a, b)
    local d = math.abs(a - b) % math.pi
    return math.min(d, math.pi - d)
end

-- Mean angular error (degrees) between the estimated and generated fields
-- inside the foreground, more than two periods from every singular point.
local function orientation_error(img, info)
    local est = orientation_estimator(img, math.floor(info.period))
    local o, m = info.orientation:totable(), info.mask:totable()
    local h, w = img:size()[1], img:size()[2]
    local sum, n = 0, 0
    for y = 1, h, 3 do
        for x = 1, w, 3 do
            local far = m[y][x] > 0.99
            for _, s in ipairs(info.singular) do
                if (s.x - x) ^ 2 + (s.y - y) ^ 2 < (2 * info.period) ^ 2 then far = false end
            end
            if far then sum, n = sum + angle_diff(est(x, y), o[y][x]), n + 1 end
        end
    end
    return math.deg(sum / n), n
end

local function min(t) return -((-t):max():item()) end

local function errmsg(f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok, "expected an error")
    return tostring(err)
end

-- ---- specs -----------------------------------------------------------------

describe("synth.fingerprint", function()
    it("is a pure function of its options", function()
        local opts = { size = 96, seed = 5, finger = 3, impression = 1 }
        local a, ia = synth.fingerprint(opts)
        local b, ib = synth.fingerprint(opts)
        assert.equal(a:bytes(), b:bytes())
        assert.same(ia, ib)
        local function differs(o)
            local c = synth.fingerprint(o)
            assert.are_not.equal(a:bytes(), c:bytes())
        end
        differs({ size = 96, seed = 6, finger = 3, impression = 1 })
        differs({ size = 96, seed = 5, finger = 4, impression = 1 })
        differs({ size = 96, seed = 5, finger = 3, impression = 2 })
    end)

    it("does not touch the global generator", function()
        whorl.manual_seed(1)
        local before = whorl.rand(4):totable()
        whorl.manual_seed(1)
        synth.fingerprint({ size = 64, seed = 2 })
        assert.same(before, whorl.rand(4):totable())
    end)

    it("returns float32 (h, w) in [0, 1] with dark ridges on a light background", function()
        local img, info = synth.fingerprint({ size = { 120, 100 }, seed = 1, fields = true })
        assert.same({ 120, 100 }, img:size())
        assert.equal("float32", img:dtype())
        assert.is_true(min(img) >= 0 and img:max():item() <= 1)
        for _, k in ipairs({ "orientation", "period_map", "mask" }) do
            assert.same({ 120, 100 }, info[k]:size(), k)
        end
        -- mean grey on the finger is darker than off it
        local m = info.mask
        local inside = (img * m):sum():item() / m:sum():item()
        local outside = (img * (1 - m)):sum():item() / (1 - m):sum():item()
        assert.is_true(inside < outside - 0.15, ("inside %.3f outside %.3f"):format(inside, outside))
        local o = info.orientation
        assert.is_true(min(o) >= 0 and o:max():item() < math.pi)
    end)

    it("has any size and dpi: SOCOFing's, FVC's, a larger dpi", function()
        local cases = {
            { size = { 103, 96 }, dpi = 250 },  -- SOCOFing's scale
            { size = 300, dpi = 500 },          -- FVC2000 DB1
            { size = { 480, 640 }, dpi = 500 }, -- FVC2004 DB1
            { size = 128, dpi = 1000 },
        }
        for _, c in ipairs(cases) do
            c.seed = 3
            local img, info = synth.fingerprint(c)
            local h = type(c.size) == "table" and c.size[1] or c.size
            local w = type(c.size) == "table" and c.size[2] or c.size
            assert.same({ h, w }, img:size())
            -- the default mean period is 8.2-10 px at 500 dpi, scaled by dpi / 500
            assert.is_true(info.period >= 8.2 * c.dpi / 500 - 1e-9 and info.period <= 10 * c.dpi / 500 + 1e-9,
                ("period %.2f at %d dpi"):format(info.period, c.dpi))
        end
    end)

    it("draws the ridge period that was asked for, measured by a DFT", function()
        for _, c in ipairs({ { seed = 1 }, { seed = 2, period = 7 }, { seed = 3, period = 12 },
                             { seed = 4, class = "whorl", impression = 2 }, { seed = 5, class = "arch" },
                             { seed = 6, size = { 103, 96 }, dpi = 250 } }) do
            c.size = c.size or 192
            c.fields = true
            local img, info = synth.fingerprint(c)
            if c.period then assert.equal(c.period, info.period) end
            local p = dominant_period(img, info.mask, 3, 20)
            assert.is_true(math.abs(p / info.period - 1) < 0.10,
                ("seed %d (%s): measured period %.2f, asked %.2f"):format(c.seed, info.class, p, info.period))
        end
    end)

    it("has ridges that follow its orientation field (structure tensor)", function()
        for seed, class in ipairs(synth.classes) do
            local img, info = synth.fingerprint({ size = 192, seed = seed, class = class, fields = true,
                                                  impression = seed % 3 })
            local err, n = orientation_error(img, info)
            assert.is_true(n > 500, "too few foreground samples: " .. n)
            assert.is_true(err < 15, ("%s: mean angular error %.1f degrees"):format(class, err))
        end
    end)

    it("and that estimate is no accident: another finger's field disagrees", function()
        local img, info = synth.fingerprint({ size = 192, seed = 1, class = "left_loop", fields = true })
        local _, other = synth.fingerprint({ size = 192, seed = 2, class = "whorl", fields = true })
        local mixed = { period = info.period, singular = info.singular, mask = info.mask,
                        orientation = other.orientation }
        local err = orientation_error(img, mixed)
        assert.is_true(err > 20, ("error against the wrong field only %.1f degrees"):format(err))
    end)

    it("places singular points by class", function()
        local want = { arch = { 0, 0 }, tented_arch = { 1, 1 }, left_loop = { 1, 1 }, right_loop = { 1, 1 },
                       whorl = { 2, 2 } }
        for _, class in ipairs(synth.classes) do
            local _, info = synth.fingerprint({ size = 64, seed = 9, class = class })
            assert.equal(class, info.class)
            local cores, deltas = 0, 0
            for _, s in ipairs(info.singular) do
                if s.type == "core" then cores = cores + 1 else deltas = deltas + 1 end
            end
            assert.same(want[class], { cores, deltas }, class)
        end
        -- a left loop opens to the left: its delta lies to the right of its core
        local _, l = synth.fingerprint({ size = 128, seed = 2, class = "left_loop" })
        local _, r = synth.fingerprint({ size = 128, seed = 2, class = "right_loop" })
        assert.is_true(l.singular[2].x > l.singular[1].x)
        assert.is_true(r.singular[2].x < r.singular[1].x)
    end)

    it("reports minutiae inside the finger", function()
        local img, info = synth.fingerprint({ size = 224, seed = 7, fields = true })
        local m = info.mask:totable()
        assert.is_true(#info.minutiae >= 5 and #info.minutiae <= 200, "minutiae: " .. #info.minutiae)
        local kinds = {}
        for _, mm in ipairs(info.minutiae) do
            kinds[mm.type] = true
            assert.is_true(mm.x >= 0.5 and mm.x <= 224.5 and mm.y >= 0.5 and mm.y <= 224.5)
            assert.is_true(m[math.floor(mm.y + 0.5)][math.floor(mm.x + 0.5)] > 0.5)
            assert.is_number(mm.angle)
        end
        assert.is_true(kinds.ending and kinds.bifurcation)
    end)
end)

describe("impressions of one finger", function()
    -- back to the finger's own frame: undo the rigid motion (not the
    -- elastic distortion, which moves points by a few pixels at most)
    local function unmove(info, x, y)
        local c, s = math.cos(info.rotation), math.sin(info.rotation)
        local u, v = x - info.dx - info.center[1], y - info.dy - info.center[2]
        return info.center[1] + c * u + s * v, info.center[2] - s * u + c * v
    end

    it("share class, singular points and minutiae, and differ in pixels", function()
        local a, ia = synth.fingerprint({ size = 192, seed = 3, finger = 8, impression = 0 })
        local b, ib = synth.fingerprint({ size = 192, seed = 3, finger = 8, impression = 1 })
        assert.equal(ia.class, ib.class)
        assert.equal(#ia.singular, #ib.singular)
        assert.are_not.equal(a:bytes(), b:bytes())
        for k = 1, #ia.singular do
            local ax, ay = unmove(ia, ia.singular[k].x, ia.singular[k].y)
            local bx, by = unmove(ib, ib.singular[k].x, ib.singular[k].y)
            assert.is_true(math.abs(ax - bx) + math.abs(ay - by) < ia.period)
        end
        -- most minutiae of one impression have a partner of the same type in
        -- the other, within two ridge periods
        local matched, total = 0, 0
        for _, m in ipairs(ib.minutiae) do
            local bx, by = unmove(ib, m.x, m.y)
            local hit = false
            for _, n in ipairs(ia.minutiae) do
                local ax, ay = unmove(ia, n.x, n.y)
                if n.type == m.type and (ax - bx) ^ 2 + (ay - by) ^ 2 < (2 * ia.period) ^ 2 then hit = true end
            end
            total = total + 1
            if hit then matched = matched + 1 end
        end
        assert.is_true(total >= 5 and matched >= 0.6 * total, ("%d of %d minutiae matched"):format(matched, total))
        -- while another finger's minutiae mostly do not match
        local _, ic = synth.fingerprint({ size = 192, seed = 3, finger = 9 })
        local chance = 0
        for _, m in ipairs(ic.minutiae) do
            for _, n in ipairs(ia.minutiae) do
                if n.type == m.type and (n.x - m.x) ^ 2 + (n.y - m.y) ^ 2 < (0.5 * ia.period) ^ 2 then
                    chance = chance + 1
                    break
                end
            end
        end
        assert.is_true(chance < 0.5 * #ic.minutiae)
    end)
end)

describe("synth.batch", function()
    it("returns (N, 1, h, w) equal to the single prints it stands for", function()
        local imgs, infos = synth.batch({ count = 5, impressions = 2, size = 48, seed = 4, finger = 10 })
        assert.same({ 5, 1, 48, 48 }, imgs:size())
        assert.equal(5, #infos)
        for i = 1, 5 do
            local finger, impression = 10 + (i - 1) // 2, (i - 1) % 2
            assert.equal(finger, infos[i].finger)
            assert.equal(impression, infos[i].impression)
            local one, info = synth.fingerprint({ size = 48, seed = 4, finger = finger, impression = impression })
            assert.equal(one:bytes(), imgs[i][1]:contiguous():bytes(), "print " .. i)
            assert.same(info, infos[i])
        end
    end)

    it("draws the classes with their natural frequencies", function()
        local n = 800
        local _, infos = synth.batch({ count = n, size = 32, dpi = 200, seed = 21 })
        local counts = {}
        for _, info in ipairs(infos) do counts[info.class] = (counts[info.class] or 0) + 1 end
        for class, f in pairs(synth.class_frequencies) do
            local got = (counts[class] or 0) / n
            local sd = math.sqrt(f * (1 - f) / n)
            assert.is_true(math.abs(got - f) < 4.5 * sd, ("%s: %.3f, expected %.3f"):format(class, got, f))
        end
    end)

    it("skips the info tables on request", function()
        local imgs, infos = synth.batch({ count = 2, size = 32, dpi = 200, info = false })
        assert.same({ 2, 1, 32, 32 }, imgs:size())
        assert.is_nil(infos)
    end)
end)

describe("synth errors", function()
    it("name the bad option", function()
        assert.matches("size", errmsg(synth.fingerprint, { size = 8 }))
        assert.matches("size", errmsg(synth.fingerprint, { size = { 10, 20, 30 } }))
        assert.matches("dpi", errmsg(synth.fingerprint, { dpi = -3 }))
        assert.matches("dpi 5000", errmsg(synth.fingerprint, { dpi = 5000 }))
        assert.matches("period", errmsg(synth.fingerprint, { period = 1 }))
        assert.matches("period", errmsg(synth.fingerprint, { period = -2 }))
        assert.matches("class", errmsg(synth.fingerprint, { class = "loop" }))
        assert.matches("impression", errmsg(synth.fingerprint, { impression = -1 }))
        assert.matches("seed", errmsg(synth.fingerprint, { seed = "x" }))
        assert.matches("unknown option 'colour'", errmsg(synth.fingerprint, { colour = 1 }))
        assert.matches("options", errmsg(synth.fingerprint, 5))
        assert.matches("count", errmsg(synth.batch, { size = 32 }))
        assert.matches("count", errmsg(synth.batch, { count = 0 }))
        assert.matches("impressions", errmsg(synth.batch, { count = 2, impressions = 0 }))
        assert.matches("options table", errmsg(synth.batch))
    end)

    it("lists the classes and damage kinds", function()
        assert.same({ "arch", "tented_arch", "left_loop", "right_loop", "whorl" }, synth.classes)
        local total = 0
        for _, f in pairs(synth.class_frequencies) do total = total + f end
        assert.is_true(math.abs(total - 1) < 1e-9)
        assert.equal(12, #synth.damage_kinds)
        assert.same({ "easy", "medium", "hard" }, synth.levels)
    end)
end)
