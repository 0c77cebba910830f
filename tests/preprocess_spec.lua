-- whorl.image preprocessing: resize/fit/resample_dpi against PIL (and torch
-- for growing), histogram equalisation and CLAHE against the formulas of
-- OpenCV written out in numpy (tests/fixtures/image/
-- make_preprocess_reference.py), plus properties that do not depend on a
-- reference; foreground segmentation and cropping on a synthetic print;
-- the whorl.data pipeline as a composition of the parts; argument errors.
local whorl = require "whorl"
local cjson = require "cjson"
local image = whorl.image

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local f = assert(io.open(HERE .. "fixtures/image/preprocess_reference.json", "r"))
local ref = cjson.decode(f:read("a"))
f:close()

local function tensor(e, dtype)
    return whorl.tensor(e.data, { dtype = dtype or "float32" }):view(table.unpack(e.shape))
end

local function maxdiff(a, b) return (a:double() - b:double()):abs():max():item() end
local function tmin(t) return -((-t):max():item()) end

local function assert_close(got, e, tol, what)
    assert.are.same(e.shape, got:size(), what)
    local d = maxdiff(got, tensor(e, "float64"))
    assert(d <= tol, string.format("%s: max difference %g > %g", what, d, tol))
end

local img = tensor(ref.image)

describe("image.resize", function()
    for _, c in ipairs(ref.resize) do
        it(("23x31 -> %dx%d matches PIL (area shrink, bilinear growth)"):format(c.h, c.w), function()
            assert_close(image.resize(img, c.h, c.w), c.out, 2e-5, "resize")
        end)
    end

    it("keeps the mean when shrinking by area", function()
        local small = image.resize(img:narrow(1, 1, 22):narrow(2, 1, 30), 11, 15)
        local m1 = img:narrow(1, 1, 22):narrow(2, 1, 30):mean():item()
        assert(math.abs(small:mean():item() - m1) < 1e-5)
    end)

    it("reproduces a constant image at any size", function()
        local c = whorl.full({ 13, 17 }, 0.375)
        for _, s in ipairs({ { 5, 40 }, { 26, 34 }, { 1, 1 }, { 13, 17 } }) do
            local r = image.resize(c, s[1], s[2])
            assert(maxdiff(r, whorl.full(s, 0.375)) < 1e-6)
        end
    end)

    it("accepts uint8 and colour input", function()
        local u = (img * 255):byte()
        local r = image.resize(u, 10, 12)
        assert(maxdiff(r, image.resize(u:float() / 255, 10, 12)) < 1e-6)
        local c3 = whorl.zeros({ 3, 23, 31 })
        c3[1]:copy_(img)
        c3[2]:copy_(img)
        c3[3]:copy_(img)
        assert(maxdiff(image.resize(c3, 10, 12), image.resize(img, 10, 12)) < 1e-5)
    end)
end)

describe("image.fit and image.resample_dpi", function()
    it("the background is the median of the border", function()
        assert(math.abs(image.background(img) - ref.border_median) < 1e-6)
    end)

    for _, c in ipairs(ref.fit) do
        it(("fits 23x31 into %dx%d"):format(c.h, c.w), function()
            local size = c.h == c.w and c.h or { c.h, c.w }
            local out = image.fit(img, size, { background = c.background ~= cjson.null and c.background or nil })
            assert_close(out, c.out, 2e-5, "fit")
        end)
    end

    for _, c in ipairs(ref.dpi) do
        it(("resamples %d dpi to %d dpi"):format(c.from, c.to), function()
            assert_close(image.resample_dpi(img, c.from, c.to), c.out, 2e-5, "resample_dpi")
        end)
    end
end)

describe("contrast", function()
    local eq_img = tensor(ref.eq_image)

    for _, c in ipairs(ref.equalize) do
        it("histogram equalisation with " .. c.bins .. " bins", function()
            local out = image.equalize(eq_img, { bins = c.bins })
            assert_close(out, c.out, 1e-6, "equalize")
            assert(tmin(out) == 0 and math.abs(out:max():item() - 1) < 1e-6)
        end)
    end

    it("equalisation is monotone and leaves a constant image alone", function()
        local ramp = whorl.tensor({ { 0.1, 0.1, 0.2, 0.35, 0.35, 0.36, 0.9 } })
        local out = image.equalize(ramp):totable()[1]
        for i = 2, #out do assert(out[i] >= out[i - 1]) end
        assert.are.equal(0, out[1])
        local flat = whorl.full({ 5, 6 }, 0.4)
        assert(maxdiff(image.equalize(flat), flat) == 0)
    end)

    for _, c in ipairs(ref.clahe) do
        it(("CLAHE with %dx%d tiles, clip %g, %d bins"):format(c.tiles[1], c.tiles[2], c.clip, c.bins),
            function()
                local out = image.clahe(eq_img, { tiles = c.tiles, clip = c.clip, bins = c.bins })
                assert_close(out, c.out, 1e-5, "clahe")
            end)
    end

    it("CLAHE without a limit on one tile is the image's cumulative histogram", function()
        local out = image.clahe(eq_img, { tiles = 1, clip = 0 })
        local v = eq_img:totable()
        local n = #v * #v[1]
        local counts = {}
        local function bin(x) return math.min(255, math.max(0, math.floor(x * 256))) end
        for _, row in ipairs(v) do
            for _, x in ipairs(row) do counts[bin(x)] = (counts[bin(x)] or 0) + 1 end
        end
        local cdf, acc = {}, 0
        for k = 0, 255 do
            acc = acc + (counts[k] or 0)
            cdf[k] = acc / n
        end
        local o = out:totable()
        for y = 1, #v, 5 do
            for x = 1, #v[1], 3 do
                assert(math.abs(o[y][x] - cdf[bin(v[y][x])]) < 1e-6)
            end
        end
    end)

    it("CLAHE keeps values in [0,1] and a constant image constant", function()
        local out = image.clahe(eq_img, { tiles = { 3, 3 }, clip = 1.5 })
        assert(tmin(out) >= 0 and out:max():item() <= 1 + 1e-6)
        local flat = image.clahe(whorl.full({ 20, 24 }, 0.6), { tiles = 4 })
        assert(maxdiff(flat, whorl.full({ 20, 24 }, flat:get(1, 1))) < 1e-6)
    end)
end)

describe("foreground segmentation", function()
    local seg = ref.segment
    local canvas = tensor(seg.image)
    local pb, sb = seg.print_box, seg.speck_box -- 0-based, half-open

    it("finds the print and ignores the speck", function()
        local mask, box = image.foreground(canvas, { block = 8 })
        assert.are.same(canvas:size(), mask:size())
        local top, left, bottom, right = box[1] - 1, box[2] - 1, box[3], box[4]
        -- covers the print, overshooting by less than a block on each side
        assert(top <= pb[1] and left <= pb[2] and bottom >= pb[3] and right >= pb[4],
            "box misses the print: " .. table.concat(box, ","))
        assert(pb[1] - top < 8 and pb[2] - left < 8 and bottom - pb[3] < 8 and right - pb[4] < 8,
            "box too large: " .. table.concat(box, ","))
        assert(top >= sb[3] or left >= sb[4], "the speck is inside the box")
        -- the mask is 0/1 and 1 in the middle of the print, 0 on the speck
        assert.are.equal(1, mask:get(math.floor((pb[1] + pb[3]) / 2), math.floor((pb[2] + pb[4]) / 2)))
        assert.are.equal(0, mask:get(sb[1] + 2, sb[2] + 2))
        assert.are.equal(0, mask:get(70, 3))
    end)

    it("crops to the box, with a margin when asked", function()
        local cropped, box = image.crop(canvas, { block = 8 })
        assert.are.same({ box[3] - box[1] + 1, box[4] - box[2] + 1 }, cropped:size())
        local view = canvas:narrow(1, box[1], box[3] - box[1] + 1):narrow(2, box[2], box[4] - box[2] + 1)
        assert.are.equal(0, maxdiff(cropped, view))
        local _, wide = image.crop(canvas, { block = 8, margin = 3 })
        assert.are.same({ math.max(1, box[1] - 3), math.max(1, box[2] - 3),
            math.min(72, box[3] + 3), math.min(96, box[4] + 3) }, wide)
    end)

    it("a blank image has no foreground and is not cropped", function()
        local blank = whorl.full({ 40, 50 }, 0.9)
        local mask, box = image.foreground(blank)
        assert.is_nil(box)
        assert.are.equal(0, mask:max():item())
        local cropped, cbox = image.crop(blank)
        assert.are.same({ 40, 50 }, cropped:size())
        assert.are.same({ 1, 1, 40, 50 }, cbox)
    end)

    it("a higher threshold keeps less", function()
        local m1 = image.foreground(canvas, { block = 8, threshold = 0.05 })
        local m2 = image.foreground(canvas, { block = 8, threshold = 1.5 })
        assert(m2:sum():item() <= m1:sum():item())
    end)
end)

describe("image.to_grey and image.preprocess", function()
    it("converts colour and bytes to grey floats", function()
        local rgb = whorl.tensor({ { { 255, 0 } }, { { 0, 255 } }, { { 0, 0 } } }, { dtype = "uint8" })
        local g = image.to_grey(rgb)
        assert.are.same({ 1, 2 }, g:size())
        assert(math.abs(g:get(1, 1) - 0.299) < 1e-6 and math.abs(g:get(1, 2) - 0.587) < 1e-6)
        local one = image.to_grey(img:view(1, 23, 31))
        assert.are.equal(0, maxdiff(one, img))
    end)

    it("is the composition of its steps, in order", function()
        local canvas = tensor(ref.segment.image)
        local bg = image.background(canvas)
        local cropped = image.crop(canvas, { block = 8 })
        for _, eq in ipairs({ "none", "hist", "clahe" }) do
            local out, box = image.preprocess(canvas, { crop = true, block = 8, size = 40,
                equalize = eq, tiles = 4 })
            local want = image.fit(cropped, 40, { background = bg })
            if eq == "hist" then want = image.equalize(want) end
            if eq == "clahe" then want = image.clahe(want, { tiles = 4 }) end
            assert(maxdiff(out, want) < 1e-6, eq)
            assert.are.same(select(2, image.crop(canvas, { block = 8 })), box)
        end
        local inv = image.preprocess(canvas, { size = { 30, 20 }, fit = false, invert = true })
        assert(maxdiff(inv, 1 - image.resize(canvas, 30, 20)) < 1e-6)
        local dpi = image.preprocess(img, { dpi = 569, target_dpi = 500 })
        assert(maxdiff(dpi, image.resample_dpi(img, 569, 500)) < 1e-6)
    end)

    it("never returns its input tensor", function()
        local out = image.preprocess(img, {})
        out:fill_(0)
        assert(img:max():item() > 0)
    end)
end)

describe("argument errors", function()
    local function err(fn, ...)
        local ok, e = pcall(fn, ...)
        assert(not ok)
        return tostring(e)
    end

    it("names the problem", function()
        assert.truthy(err(image.resize, img, 0, 5):find("1..65535"))
        assert.truthy(err(image.resize, whorl.zeros({ 2, 3, 4, 5 }), 4, 4):find("(H,W) or (C,H,W)", 1, true))
        assert.truthy(err(image.resize, whorl.zeros({ 7, 4, 5 }), 4, 4):find("C in 1..4"))
        assert.truthy(err(image.foreground, img, { block = 1 }):find("block"))
        assert.truthy(err(image.foreground, img, { threshold = -1 }):find("threshold"))
        assert.truthy(err(image.clahe, img, { tiles = 0 }):find("tiles"))
        assert.truthy(err(image.clahe, img, { tiles = 30 }):find("cannot hold"))
        assert.truthy(err(image.clahe, img, { clip = -2 }):find("clip"))
        assert.truthy(err(image.equalize, img, { bins = 1 }):find("bins"))
        assert.truthy(err(image.resample_dpi, img, -500, 500):find("positive"))
        assert.truthy(err(image.fit, img, { 3 }):find("{h, w}", 1, true))
        assert.truthy(err(image.preprocess, img, { dpi = 500 }):find("target_dpi"))
        assert.truthy(err(image.preprocess, img, { equalize = "sharpen" }):find("sharpen"))
    end)
end)
