-- whorl.metrics: MSE, PSNR and SSIM per image, whole and masked, against
-- values by hand and scikit-image references (tests/fixtures/
-- metrics_reference.json, written by fixtures/make_metrics_reference.py).
local whorl = require "whorl"
local cjson = require "cjson"

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local function load_fixture(name)
    local f = assert(io.open(HERE .. "fixtures/" .. name, "r"))
    local doc = cjson.decode(f:read("a"))
    f:close()
    return doc
end

local function from_flat(data, shape, dtype)
    return whorl.tensor(data, {dtype = dtype or "float64"}):view(shape)
end

local function close(a, b, tol, what)
    assert(math.abs(a - b) <= tol, string.format("%s: %.12g vs %.12g (tol %g)", what or "", a, b, tol))
end

describe("whorl.metrics", function()
    local M = whorl.metrics

    it("computes MSE by hand, per image and the mean", function()
        local a = from_flat({0, 0, 0, 0, 1, 1, 1, 1}, {2, 1, 2, 2})
        local b = from_flat({0, 1, 0, 1, 1, 1, 1, 0}, {2, 1, 2, 2})
        local mean, per = M.mse(a, b)
        close(per[1], 0.5, 1e-15, "image 1")
        close(per[2], 0.25, 1e-15, "image 2")
        close(mean, 0.375, 1e-15, "mean")
        assert.are.equal(2, #per)
    end)

    it("takes (H,W) images as a batch of one", function()
        local a = from_flat({0, 0.5, 1, 0}, {2, 2})
        local b = from_flat({0, 0, 1, 1}, {2, 2})
        local mean, per = M.mse(a, b)
        close(mean, (0.25 + 1) / 4, 1e-15)
        assert.are.equal(1, #per)
    end)

    it("gives PSNR 20 dB for a constant offset of 0.1 (MSE 0.01)", function()
        local a = whorl.rand({3, 1, 12, 12}, "float64") * 0.8
        local b = a + 0.1
        local mse = M.mse(a, b)
        close(mse, 0.01, 1e-12, "mse")
        local mean, per = M.psnr(a, b)
        for i = 1, 3 do close(per[i], 20, 1e-9, "psnr " .. i) end
        close(mean, 20, 1e-9)
        -- data_range 2: 10 log10(4 / 0.01) = 26.0206 dB
        close((M.psnr(a, b, {data_range = 2})), 10 * math.log(400, 10), 1e-9, "range 2")
        -- float32 works too
        close((M.psnr(a:float(), b:float())), 20, 1e-4, "float32")
    end)

    it("gives PSNR math.huge for equal images", function()
        local a = whorl.rand({8, 8}, "float64")
        local mean, per = M.psnr(a, a)
        assert.are.equal(math.huge, mean)
        assert.are.equal(math.huge, per[1])
    end)

    it("gives SSIM 1 for identical images", function()
        local a = whorl.rand({2, 1, 20, 24})
        local mean, per = M.ssim(a, a)
        close(mean, 1, 1e-12)
        close(per[1], 1, 1e-12)
        close(per[2], 1, 1e-12)
        local mask = whorl.zeros({20, 24})
        mask[3][4] = 1
        close((M.ssim(a, a, {mask = mask})), 1, 1e-12, "masked")
    end)

    it("averages over the masked pixels only", function()
        -- image 1 differs by 1 on one masked pixel and by 0.5 outside it
        local a = whorl.zeros({2, 1, 3, 3}, "float64")
        local b = from_flat({1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
                             0, 0, 0, 0, 0.2, 0, 0, 0, 0}, {2, 1, 3, 3})
        local mask = from_flat({1, 1, 0, 0, 0, 0, 0, 0, 0,
                                0, 0, 0, 0, 1, 0, 0, 0, 0}, {2, 1, 3, 3})
        local mean, per = M.mse(a, b, {mask = mask})
        close(per[1], (1 + 0.25) / 2, 1e-15, "image 1")
        close(per[2], 0.04, 1e-15, "image 2")
        close(mean, (0.625 + 0.04) / 2, 1e-15)
        local _, pp = M.psnr(a, b, {mask = mask})
        close(pp[2], 10 * math.log(1 / 0.04, 10), 1e-9, "psnr masked")
        -- a shared (H,W) mask, any dtype
        local shared = from_flat({0, 0, 0, 0, 1, 0, 0, 0, 0}, {3, 3}, "uint8")
        local _, ps = M.mse(a, b, {mask = shared})
        close(ps[1], 0.25, 1e-15)
        close(ps[2], 0.04, 1e-15)
    end)

    describe("matches scikit-image", function()
        local doc = load_fixture("metrics_reference.json")
        for _, p in ipairs(doc.pairs) do
            it(p.name, function()
                local a = from_flat(p.a, p.shape)
                local b = from_flat(p.b, p.shape)
                local mask = from_flat(p.mask, p.shape)
                local opts = {data_range = p.data_range}
                local mopts = {data_range = p.data_range, mask = mask}
                close((M.ssim(a, b, opts)), p.ssim, 1e-10, "ssim")
                close((M.ssim(a, b, mopts)), p.ssim_masked, 1e-10, "ssim masked")
                -- an all-ones mask gives the mean of the uncropped map
                local ones = whorl.ones(p.shape, "float64")
                close((M.ssim(a, b, {data_range = p.data_range, mask = ones})), p.ssim_full_mean,
                      1e-10, "ssim full map")
                close((M.mse(a, b)), p.mse, 1e-12, "mse")
                close((M.mse(a, b, {mask = mask})), p.mse_masked, 1e-12, "mse masked")
                close((M.psnr(a, b, opts)), p.psnr, 1e-9, "psnr")
                close((M.psnr(a, b, mopts)), p.psnr_masked, 1e-9, "psnr masked")
                -- as one image of a batch, and in float32
                local h, w = p.shape[1], p.shape[2]
                local ab = whorl.cat({a:view(1, 1, h, w), b:view(1, 1, h, w)}, 1)
                local ba = whorl.cat({b:view(1, 1, h, w), a:view(1, 1, h, w)}, 1)
                local mean, per = M.ssim(ab, ba, {data_range = p.data_range, mask = mask})
                close(per[1], p.ssim_masked, 1e-10, "batch")
                close(per[2], p.ssim_masked, 1e-10, "batch, swapped")
                close(mean, p.ssim_masked, 1e-10, "batch mean")
                close((M.ssim(a:float(), b:float(), opts)), p.ssim, 1e-5, "float32")
            end)
        end
    end)

    it("compares damaged and restored images with clean ones", function()
        whorl.manual_seed(1)
        local clean = whorl.rand({2, 1, 16, 16}, "float64")
        local damaged = clean + 0.1
        local restored = clean + 0.01
        local mask = whorl.zeros({16, 16}, "float64")
        mask[5][6] = 1
        local r = M.compare(clean, damaged, restored, {mask = mask})
        assert.are.equal(2, r.n)
        close(r.whole.damaged.mse, 0.01, 1e-12)
        close(r.whole.damaged.psnr, 20, 1e-9)
        close(r.whole.restored.psnr, 40, 1e-9)
        close(r.region.restored.mse, 1e-4, 1e-12)
        close(r.whole.damaged.ssim, (M.ssim(damaged, clean)), 1e-15)
        close(r.region.damaged.ssim, (M.ssim(damaged, clean, {mask = mask})), 1e-15)
        assert.is_true(r.whole.restored.ssim > r.whole.damaged.ssim)
        -- without a mask there is no region, and the table encodes as JSON
        local w = M.compare(clean, damaged, restored)
        assert.is_nil(w.region)
        assert.is_string(cjson.encode(w))
    end)

    describe("errors", function()
        local a = whorl.zeros({2, 1, 12, 12})
        it("names both shapes on a mismatch", function()
            assert.has_error(function() M.mse(a, whorl.zeros({2, 1, 12, 13})) end,
                "whorl.metrics.mse: a and b must have the same shape, got a [2, 1, 12, 12] and b [2, 1, 12, 13]")
            assert.error_matches(function() M.compare(a, a, whorl.zeros({1, 1, 12, 12})) end,
                "restored vs clean.*%[1, 1, 12, 12%].*%[2, 1, 12, 12%]")
            assert.error_matches(function() M.ssim(whorl.zeros({2, 3, 12, 12}), whorl.zeros({2, 3, 12, 12})) end,
                "%(H,W%) or %(N,1,H,W%)")
            assert.error_matches(function() M.mse(a, a, {mask = whorl.ones({12, 11})}) end,
                "mask must have the shape")
        end)
        it("rejects non-float images", function()
            local u = whorl.zeros({12, 12}, "uint8")
            assert.error_matches(function() M.psnr(u, u) end, "float32 or float64, got uint8")
        end)
        it("says which image has an empty mask", function()
            local mask = whorl.ones({2, 1, 12, 12})
            mask[2]:fill_(0)
            assert.error_matches(function() M.ssim(a, a, {mask = mask}) end,
                "mask of image 2 %(1%-based%) of 2 is empty")
        end)
        it("needs 11x11 images for SSIM and rejects bad options", function()
            local s = whorl.zeros({10, 12})
            assert.error_matches(function() M.ssim(s, s) end, "at least 11x11")
            assert.error_matches(function() M.psnr(a, a, {data_range = 0}) end, "data_range")
            assert.error_matches(function() M.mse(a, a, {data_range = 2}) end, "unknown option 'data_range'")
            assert.error_matches(function() M.ssim(a, a, {mask = 3}) end, "mask must be a tensor")
        end)
    end)
end)
