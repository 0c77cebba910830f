-- whorl.synth.damage: every kind at every level changes exactly the pixels
-- its mask names, a meaningful share of them, more for harder levels;
-- determinism by seed; batches; input forms; errors.
local whorl = require "whorl"
local synth = whorl.synth

local function errmsg(f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok, "expected an error")
    return tostring(err)
end

-- A few prints to damage, generated once.
local prints = {}
local function print_of(seed, size)
    local key = seed .. "/" .. (size or 128)
    if not prints[key] then prints[key] = synth.fingerprint({ size = size or 128, seed = seed }) end
    return prints[key]
end

-- Comparison of in, out and mask (same shapes), in float64 where every
-- difference of two float32 values is exact: pixels outside the mask that
-- changed, mask values other than 0/1, pixels inside, changed inside, and
-- the summed absolute change.  clamp(|d| * 1e300, 0, 1) is 1 exactly where
-- d ~= 0 (no float32 difference is below 1e-45).
local function compare(img, out, mask)
    local d = (out:double() - img:double()):abs()
    local m = mask:double()
    local changed = whorl.clamp(d * 1e300, 0, 1)
    return {
        leaked = (changed * (1 - m)):sum():item(),
        odd = (m * (1 - m)):abs():sum():item() + (m - whorl.clamp(m, 0, 1)):abs():sum():item(),
        inside = m:sum():item(),
        changed = (changed * m):sum():item(),
        amount = d:sum():item(),
    }
end

describe("synth.damage", function()
    for _, kind in ipairs(synth.damage_kinds) do
        it(kind .. ": changes only the masked pixels, more at harder levels", function()
            local n = 128 * 128
            local amounts = { 0, 0, 0 }
            for seed = 1, 2 do
                local src = print_of(seed)
                for l, level in ipairs(synth.levels) do
                    local out, mask, choice = synth.damage(src, kind, { level = level, seed = seed })
                    assert.same({ 128, 128 }, out:size())
                    assert.same({ 128, 128 }, mask:size())
                    assert.same({ { kind = kind, level = level } }, choice)
                    local r = compare(src, out, mask)
                    assert.equal(0, r.odd, "mask values other than 0 and 1")
                    assert.equal(0, r.leaked, ("%s/%s: %d pixels changed outside the mask"):format(kind, level, r.leaked))
                    assert.is_true(r.inside >= 0.005 * n, ("%s/%s: mask of %d pixels"):format(kind, level, r.inside))
                    assert.is_true(r.changed >= 0.5 * r.inside,
                        ("%s/%s: %d of %d masked pixels changed"):format(kind, level, r.changed, r.inside))
                    amounts[l] = amounts[l] + r.amount
                end
            end
            assert.is_true(amounts[1] < amounts[2] and amounts[2] < amounts[3],
                ("%s: total change %.1f / %.1f / %.1f for easy / medium / hard"):format(kind, amounts[1],
                    amounts[2], amounts[3]))
        end)
    end

    it("is deterministic by seed", function()
        local img = print_of(2)
        for _, kind in ipairs(synth.damage_kinds) do
            local a, ma = synth.damage(img, kind, { seed = 7 })
            local b, mb = synth.damage(img, kind, { seed = 7 })
            local c = synth.damage(img, kind, { seed = 8 })
            assert.equal(a:bytes(), b:bytes(), kind)
            assert.equal(ma:bytes(), mb:bytes(), kind)
            assert.are_not.equal(a:bytes(), c:bytes(), kind)
        end
    end)

    it("takes the level alone as its third argument", function()
        local img = print_of(2)
        local a, ma = synth.damage(img, "smudge", "hard")
        local b, mb = synth.damage(img, "smudge", { level = "hard", seed = 0 })
        assert.equal(b:bytes(), a:bytes())
        assert.equal(mb:bytes(), ma:bytes())
    end)

    it("leaves its input alone and accepts (1, h, w), float64 and strided views", function()
        local img = print_of(3)
        local before = img:bytes()
        local out, mask = synth.damage(img, "erasure", { seed = 1 })
        assert.equal(before, img:bytes())
        local out3, mask3 = synth.damage(img:view(1, 128, 128), "erasure", { seed = 1 })
        assert.same({ 1, 128, 128 }, out3:size())
        assert.equal(out:bytes(), out3:contiguous():bytes())
        assert.equal(mask:bytes(), mask3:contiguous():bytes())
        local out64 = synth.damage(img:double(), "erasure", { seed = 1 })
        assert.equal("float32", out64:dtype())
        assert.equal(out:bytes(), out64:bytes())
        -- a transposed view is damaged as the image it shows
        local t = img:t()
        local a = synth.damage(t, "blur", { seed = 1 })
        local b = synth.damage(t:contiguous(), "blur", { seed = 1 })
        assert.equal(b:bytes(), a:bytes())
    end)

    it("works at SOCOFing's and FVC's sizes and on a blank image", function()
        local small = synth.fingerprint({ size = { 103, 96 }, dpi = 250, seed = 4 })
        local big = synth.fingerprint({ size = { 480, 640 }, seed = 4 })
        for _, img in ipairs({ small, big, whorl.ones(40, 50) }) do
            for _, kind in ipairs(synth.damage_kinds) do
                local out, mask = synth.damage(img, kind, { level = "hard", seed = 2 })
                assert.same(img:size(), out:size())
                local r = compare(img, out, mask)
                assert.equal(0, r.leaked, kind)
            end
        end
    end)
end)

describe("synth.damage on batches", function()
    local imgs = synth.batch({ count = 6, size = 64, seed = 5, info = false })

    it("damages each image independently and reproducibly", function()
        local out, mask, choices = synth.damage(imgs, "obliteration", { level = "hard", seed = 3 })
        assert.same({ 6, 1, 64, 64 }, out:size())
        assert.same({ 6, 1, 64, 64 }, mask:size())
        assert.equal(6, #choices)
        local out2, mask2 = synth.damage(imgs, "obliteration", { level = "hard", seed = 3 })
        assert.equal(out:bytes(), out2:bytes())
        assert.equal(mask:bytes(), mask2:bytes())
        for i = 1, 6 do
            local r = compare(imgs[i][1], out[i][1], mask[i][1])
            assert.equal(0, r.leaked)
            assert.is_true(r.changed > 0)
        end
        -- identical inputs get different damage
        local same = whorl.tensor(imgs[1]):view(1, 1, 64, 64):expand(3, 1, 64, 64):contiguous()
        local _, m = synth.damage(same, "erasure", { seed = 1 })
        assert.are_not.equal(m[1]:contiguous():bytes(), m[2]:contiguous():bytes())
    end)

    it("draws kinds and levels per image from lists or 'random'", function()
        local n = 40
        local many = whorl.tensor(imgs[1]):view(1, 1, 64, 64):expand(n, 1, 64, 64):contiguous()
        local _, _, choices = synth.damage(many, { "blur", "zcut" }, { level = { "easy", "hard" }, seed = 9 })
        local seen = {}
        for _, c in ipairs(choices) do
            assert.is_true(c.kind == "blur" or c.kind == "zcut")
            assert.is_true(c.level == "easy" or c.level == "hard")
            seen[c.kind .. c.level] = true
        end
        assert.is_true(seen.blureasy and seen.blurhard and seen.zcuteasy and seen.zcuthard)
        local _, _, any = synth.damage(many, "random", { level = "random", seed = 9 })
        local kinds = {}
        for _, c in ipairs(any) do kinds[c.kind] = true end
        local count = 0
        for _ in pairs(kinds) do count = count + 1 end
        assert.is_true(count >= 8, "only " .. count .. " kinds in 40 random draws")
    end)
end)

describe("synth.damage errors", function()
    local img = whorl.rand(32, 32)
    it("name the argument", function()
        assert.matches("unknown kind 'scar'", errmsg(synth.damage, img, "scar"))
        assert.matches("kind", errmsg(synth.damage, img))
        assert.matches("kind must be a name", errmsg(synth.damage, img, { "blur", 3 }))
        assert.matches("unknown level 'extreme'", errmsg(synth.damage, img, "blur", { level = "extreme" }))
        assert.matches("unknown option 'strength'", errmsg(synth.damage, img, "blur", { strength = 2 }))
        assert.matches("seed", errmsg(synth.damage, img, "blur", { seed = 1.5 }))
        assert.matches("%(h, w%)", errmsg(synth.damage, whorl.rand(2, 2, 32, 32), "blur"))
        assert.matches("%(h, w%)", errmsg(synth.damage, whorl.rand(32), "blur"))
        assert.matches("float32 or float64", errmsg(synth.damage, img:byte(), "blur"))
        assert.matches("8 to", errmsg(synth.damage, whorl.rand(5, 40), "blur"))
        assert.matches("tensor", errmsg(synth.damage, "image.png", "blur"))
    end)
end)
