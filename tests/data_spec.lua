-- whorl.data on generated folder trees: SOCOFing and FVC names and
-- pairing, plain and paired folders, layout detection, seeded splits
-- (random and grouped without identity leaks), preprocessed pixels, the
-- cache file (fast second load, stale and corrupt files rebuilt), and
-- batches (shapes, per-epoch shuffling, background thread = synchronous).
local whorl = require "whorl"
local files = require "helpers.files"
local slurp, spit = files.slurp, files.spit
local data = whorl.data
local image = whorl.image

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p " .. TMP))

local function mkdir(p) assert(os.execute("mkdir -p '" .. p .. "'")) end
local function maxdiff(a, b) return (a:double() - b:double()):abs():max():item() end

local function err_of(fn, ...)
    local ok, e = pcall(fn, ...)
    assert(not ok, "expected an error")
    return tostring(e)
end

-- A small print-like image: rings on a light background, different per seed.
local function fake_print(h, w, seed)
    whorl.manual_seed(seed)
    local img = whorl.rand({ h, w }) * 0.1 + 0.85
    local cy, cx = h / 2 + seed % 3, w / 2 - seed % 2
    for y = 3, h - 2 do
        for x = 3, w - 2 do
            local d = math.sqrt((y - cy) ^ 2 + (x - cx) ^ 2)
            if d < math.min(h, w) / 2 - 2 then img:set(y, x, 0.5 + 0.4 * math.cos(d * 0.9 + seed)) end
        end
    end
    return img
end

-- ---- SOCOFing ----------------------------------------------------------------------------

local SOC = TMP .. "/SOCOFing"
local soc_real = {}
local function build_socofing()
    mkdir(SOC .. "/Real")
    for _, lvl in ipairs({ "Easy", "Medium", "Hard" }) do mkdir(SOC .. "/Altered/Altered-" .. lvl) end
    local n = 0
    for subject = 1, 4 do
        local g = subject % 2 == 0 and "F" or "M"
        for _, hand in ipairs({ "Left", "Right" }) do
            for _, finger in ipairs({ "thumb", "index", "little" }) do
                n = n + 1
                local name = ("%d__%s_%s_%s_finger"):format(subject, g, hand, finger)
                local img = fake_print(26, 24, n)
                image.write(SOC .. "/Real/" .. name .. ".BMP", img)
                soc_real[#soc_real + 1] = name
                for li, lvl in ipairs({ "Easy", "Medium", "Hard" }) do
                    for ti, dmg in ipairs({ "CR", "Obl", "Zcut" }) do
                        -- the damage: a dark bar, wider for harder levels
                        local d = img:clone()
                        d:narrow(1, 6 + ti, li + 1):fill_(0.1)
                        image.write(("%s/Altered/Altered-%s/%s_%s.BMP"):format(SOC, lvl, name, dmg), d)
                    end
                end
            end
        end
    end
    spit(SOC .. "/README.txt", "not an image")
    mkdir(SOC .. "/Other")
    image.write(SOC .. "/Other/preview.png", fake_print(10, 10, 0))
end
build_socofing()

describe("SOCOFing", function()
    it("parses the names", function()
        local m = data.parse_socofing_name("12__F_Right_little_finger_Zcut.BMP")
        assert.are.same({ 12, "F", "Right", "little", "Zcut", "12_Right_little" },
            { m.subject, m.gender, m.hand, m.finger, m.damage, m.finger_id })
        assert.are.equal("12__F_Right_little_finger.BMP", m.real_name)
        m = data.parse_socofing_name("3__M_Left_thumb_finger.bmp")
        assert.are.same({ 3, "M", "Left", "thumb" }, { m.subject, m.gender, m.hand, m.finger })
        assert.is_nil(m.damage)
        for _, bad in ipairs({ "3__X_Left_thumb_finger.BMP", "3__M_Up_thumb_finger.BMP",
            "3__M_Left_toe_finger.BMP", "3_M_Left_thumb_finger.BMP", "3__M_Left_thumb_finger_XX.BMP",
            "3__M_Left_thumb_finger" }) do
            assert.is_nil(data.parse_socofing_name(bad), bad)
        end
    end)

    it("pairs every altered image with its real one", function()
        local ds = data.socofing(SOC)
        assert.are.equal("socofing", ds.layout)
        assert.are.equal(#soc_real * 9, #ds)
        local seen = {}
        for i = 1, #ds do
            local it = ds:item(i)
            assert.truthy(it.path:find("/Altered/Altered%-" .. it.level .. "/"))
            assert.are.equal(SOC .. "/Real/" .. it.real_name, it.target_path)
            assert.truthy(it.name:find("_" .. it.damage .. "%.BMP$"))
            assert.are.equal(it.subject % 2 == 0 and "F" or "M", it.gender)
            seen[it.level .. it.damage] = (seen[it.level .. it.damage] or 0) + 1
        end
        for _, lvl in ipairs({ "Easy", "Medium", "Hard" }) do
            for _, dmg in ipairs({ "CR", "Obl", "Zcut" }) do
                assert.are.equal(#soc_real, seen[lvl .. dmg])
            end
        end
        assert.are.same({ "Other/preview.png" }, ds.ignored)
    end)

    it("filters levels and damage types, and can add the real images", function()
        local ds = data.socofing(SOC, { levels = { "hard" }, types = { "CR", "Zcut" } })
        assert.are.equal(#soc_real * 2, #ds)
        for i = 1, #ds do
            local it = ds:item(i)
            assert.are.equal("Hard", it.level)
            assert.truthy(it.damage == "CR" or it.damage == "Zcut")
        end
        local with_real = data.socofing(SOC, { levels = { "Easy" }, include_real = true })
        assert.are.equal(#soc_real * 4, #with_real)
        local real = 0
        for i = 1, #with_real do
            local it = with_real:item(i)
            if not it.damage then
                real = real + 1
                assert.are.equal(it.path, it.target_path)
            end
        end
        assert.are.equal(#soc_real, real)
        assert.truthy(err_of(data.socofing, SOC, { levels = { "Extreme" } }):find("Extreme"))
    end)

    it("reads Real/ alone as unpaired images", function()
        local root = TMP .. "/soc_real_only"
        mkdir(root .. "/Real")
        os.execute(("cp %s/Real/1__M_Left_*.BMP %s/Real/"):format(SOC, root))
        local ds = data.socofing(root)
        assert.are.equal(3, #ds)
        assert.is_nil(ds:item(1).target_path)
    end)

    it("names a missing real image and a badly named file", function()
        local root = TMP .. "/soc_broken"
        mkdir(root .. "/Real")
        mkdir(root .. "/Altered/Altered-Easy")
        os.execute(("cp %s/Real/1__M_Left_thumb_finger.BMP %s/Real/"):format(SOC, root))
        os.execute(("cp %s/Altered/Altered-Easy/2__F_Left_thumb_finger_CR.BMP %s/Altered/Altered-Easy/")
            :format(SOC, root))
        local e = err_of(data.socofing, root)
        assert.truthy(e:find(root .. "/Altered/Altered-Easy/2__F_Left_thumb_finger_CR.BMP", 1, true), e)
        assert.truthy(e:find("Real/2__F_Left_thumb_finger.BMP", 1, true), e)
        os.remove(root .. "/Altered/Altered-Easy/2__F_Left_thumb_finger_CR.BMP")
        spit(root .. "/Real/finger7.bmp", slurp(SOC .. "/Real/1__M_Left_thumb_finger.BMP"))
        e = err_of(data.socofing, root)
        assert.truthy(e:find(root .. "/Real/finger7.bmp", 1, true), e)
        e = err_of(data.socofing, TMP .. "/nowhere")
        assert.truthy(e:find(TMP .. "/nowhere", 1, true), e)
    end)

    it("crops a damaged image with its real image's box", function()
        local ds = data.socofing(SOC, { size = 20, crop = true, block = 4, levels = { "Hard" } })
        local real = data.socofing(SOC:gsub("SOCOFing$", "soc_real_only"), { size = 20, crop = true, block = 4 })
        for i = 1, 6 do
            local it = ds:item(i)
            local box = ds:box(i)
            local img = image.read(it.target_path)
            local _, want = image.crop(img, { block = 4 })
            assert.are.same(want, box)
            -- the input is the damaged file cropped with that box
            local x, y = ds:get(i)
            local manual = image.fit(image.crop(image.read(it.path), { block = 4 }) and
                image.read(it.path):narrow(1, box[1], box[3] - box[1] + 1):narrow(2, box[2], box[4] - box[2] + 1),
                20, { background = image.background(image.read(it.path)) })
            assert(maxdiff(x[1], manual) <= 0.5 / 255 + 1e-6)
            local ytarget = image.preprocess(image.read(it.target_path), { size = 20, crop = true, block = 4 })
            assert(maxdiff(y[1], ytarget) <= 0.5 / 255 + 1e-6)
        end
        assert(real) -- the real-only set builds with crop too
    end)
end)

-- ---- FVC, folders, pairs, detection ----------------------------------------------------------

local FVC = TMP .. "/FVC2002"
local function build_fvc()
    for _, db in ipairs({ "DB1_B", "DB2_B" }) do
        mkdir(FVC .. "/" .. db)
        for finger = 101, 104 do
            for imp = 1, 3 do
                image.write(("%s/%s/%d_%d.tif"):format(FVC, db, finger, imp), fake_print(20, 18, finger * 10 + imp))
            end
        end
    end
end
build_fvc()

describe("FVC", function()
    it("parses <finger>_<impression> and keeps databases apart", function()
        assert.are.same({ finger = 110, impression = 8 }, data.parse_fvc_name("110_8.tif"))
        assert.is_nil(data.parse_fvc_name("110-8.tif"))
        assert.is_nil(data.parse_fvc_name("a_8.tif"))
        local ds = data.fvc(FVC)
        assert.are.equal(24, #ds)
        local ids = {}
        for i = 1, #ds do
            local it = ds:item(i)
            assert.truthy(it.db == "DB1_B" or it.db == "DB2_B")
            assert.are.equal(it.db .. "/" .. it.finger, it.finger_id)
            assert.truthy(it.impression >= 1 and it.impression <= 3)
            ids[it.finger_id] = (ids[it.finger_id] or 0) + 1
        end
        local count = 0
        for _, c in pairs(ids) do
            count = count + 1
            assert.are.equal(3, c)
        end
        assert.are.equal(8, count)
        local one = data.fvc(FVC .. "/DB1_B", { dpi = 569, target_dpi = 500, size = 16 })
        assert.are.equal("101", one:item(1).finger_id)
        assert.are.same({ 1, 16, 16 }, one:get(1):size())
        local _, size = one:box(1)
        assert.are.same({ math.floor(20 * 500 / 569 + 0.5), math.floor(18 * 500 / 569 + 0.5) }, size)
    end)

    it("names a file that does not follow the pattern", function()
        local dir = TMP .. "/fvc_bad"
        mkdir(dir)
        image.write(dir .. "/101_1.tif", fake_print(10, 10, 1))
        image.write(dir .. "/scan.tif", fake_print(10, 10, 2))
        assert.truthy(err_of(data.fvc, dir):find(dir .. "/scan.tif", 1, true))
    end)
end)

describe("folders", function()
    local dir = TMP .. "/mixed"
    mkdir(dir .. "/sub/deeper")
    mkdir(dir .. "/.hidden")
    local want = { "a.PNG", "b.Tif", "c.tiff", "sub/d.bmp", "sub/deeper/e.pgm", "sub/f.JPG" }
    for i, rel in ipairs(want) do
        local p = dir .. "/" .. rel
        if rel:match("%.JPG$") then
            spit(p, slurp(debug.getinfo(1, "S").source:match("^@(.*/)") .. "fixtures/image/grey.jpg"))
        else
            image.write(p, fake_print(12, 12, i))
        end
    end
    spit(dir .. "/notes.txt", "x")
    image.write(dir .. "/.hidden/g.png", fake_print(12, 12, 9))
    image.write(dir .. "/.dotfile.png", fake_print(12, 12, 9))

    it("lists images recursively in a fixed order, any extension case", function()
        local ds = data.folder(dir, { size = 8 })
        local rels = {}
        for i = 1, #ds do rels[i] = ds:item(i).rel end
        assert.are.same(want, rels)
        assert.are.equal(dir .. "/sub/d.bmp", ds:item(4).path)
        assert.are.same({ 1, 8, 8 }, ds:get(6):size())
        local flat = data.folder(dir, { recursive = false })
        assert.are.equal(3, #flat)
        -- float32 storage keeps the preprocessed values exactly; uint8 rounds them
        local f32 = data.folder(dir, { size = 8, dtype = "float32", equalize = "clahe", tiles = 2 })
        local u8 = data.folder(dir, { size = 8, equalize = "clahe", tiles = 2 })
        local want = image.preprocess(image.read(dir .. "/b.Tif"), { size = 8, equalize = "clahe", tiles = 2 })
        assert.are.equal(0, maxdiff(f32:get(2)[1], want))
        assert(maxdiff(u8:get(2)[1], want) <= 0.5 / 255 + 1e-6)
        assert.truthy(err_of(function() data.folder(dir, { dtype = "float64" }):load() end):find("float64"))
    end)

    it("gives clear errors for missing, empty and non-folders", function()
        local e = err_of(data.folder, TMP .. "/missing_dir")
        assert.truthy(e:find(TMP .. "/missing_dir", 1, true) and e:find("does not exist"), e)
        mkdir(TMP .. "/empty_dir")
        e = err_of(data.folder, TMP .. "/empty_dir")
        assert.truthy(e:find(TMP .. "/empty_dir", 1, true) and e:find("no images"), e)
        e = err_of(data.folder, dir .. "/notes.txt")
        assert.truthy(e:find("not a folder"), e)
        assert.truthy(err_of(data.folder, dir, { sise = 3 }):find("sise"))
    end)

    it("reports a broken image by name when loading", function()
        local bad = TMP .. "/with_bad"
        mkdir(bad)
        image.write(bad .. "/ok.png", fake_print(10, 10, 1))
        spit(bad .. "/zz_broken.png", "\137PNG\r\n\26\n garbage")
        local ds = data.folder(bad, { size = 8 })
        local e = err_of(ds.load, ds)
        assert.truthy(e:find(bad .. "/zz_broken.png", 1, true), e)
    end)
end)

describe("paired folders", function()
    local root = TMP .. "/pairs"
    mkdir(root .. "/damaged/s")
    mkdir(root .. "/clean/s")
    for i = 1, 5 do
        local clean = fake_print(16, 16, i)
        image.write(("%s/clean/s/p%d.png"):format(root, i), clean)
        local d = clean:clone()
        d:narrow(1, 5, 3):fill_(0)
        image.write(("%s/damaged/s/p%d.png"):format(root, i), d)
    end
    image.write(root .. "/clean/s/unused.png", fake_print(16, 16, 99))

    it("pairs the same relative names", function()
        local ds = data.paired(root .. "/damaged", root .. "/clean", { size = 16 })
        assert.are.equal(5, #ds)
        for i = 1, 5 do
            local it = ds:item(i)
            assert.are.equal(it.path:gsub("/damaged/", "/clean/"), it.target_path)
            local x, y = ds:get(i)
            assert(maxdiff(y[1], image.read(it.target_path)) <= 0.5 / 255 + 1e-6)
            assert(maxdiff(x[1], image.read(it.path)) <= 0.5 / 255 + 1e-6)
        end
        local det = data.detect(root, { size = 16 })
        assert.are.equal("paired", det.layout)
        assert.are.equal(5, #det)
    end)

    it("names a damaged image without a partner", function()
        image.write(root .. "/damaged/s/p9.png", fake_print(16, 16, 9))
        local e = err_of(data.paired, root .. "/damaged", root .. "/clean")
        os.remove(root .. "/damaged/s/p9.png")
        assert.truthy(e:find(root .. "/damaged/s/p9.png", 1, true), e)
        assert.truthy(e:find(root .. "/clean/s/p9.png", 1, true), e)
    end)
end)

describe("data.detect", function()
    it("recognises each layout by its names", function()
        assert.are.equal("socofing", data.detect(SOC).layout)
        assert.are.equal("fvc", data.detect(FVC).layout)
        assert.are.equal("fvc", data.detect(FVC .. "/DB2_B").layout)
        assert.are.equal("folder", data.detect(TMP .. "/mixed").layout)
    end)
end)

-- ---- splits --------------------------------------------------------------------------------

describe("splits", function()
    local ds = data.socofing(SOC)

    local function paths(part)
        local t = {}
        for i = 1, #part do t[i] = part:item(i).path end
        return t
    end

    it("are reproducible by seed, with scikit-learn's rounding", function()
        local a1, b1 = ds:split({ 0.8, 0.2 }, { seed = 13 })
        local a2, b2 = ds:split(0.8, { seed = 13 })
        local a3 = ds:split({ 0.8, 0.2 }, { seed = 14 })
        assert.are.same(paths(a1), paths(a2))
        assert.are.same(paths(b1), paths(b2))
        assert.are_not.same(paths(a1), paths(a3))
        local n = #ds
        assert.are.equal(math.ceil(0.2 * n), #b1)
        assert.are.equal(n - math.ceil(0.2 * n), #a1)
        local all = {}
        for _, p in ipairs(paths(a1)) do all[p] = true end
        for _, p in ipairs(paths(b1)) do
            assert.is_nil(all[p])
            all[p] = true
        end
        local count = 0
        for _ in pairs(all) do count = count + 1 end
        assert.are.equal(n, count)
        local t, v, te = ds:split({ 0.7, 0.15, 0.15 }, { seed = 1 })
        assert.are.equal(n, #t + #v + #te)
        assert.are.equal(math.ceil(0.15 * n), #v)
    end)

    for _, by in ipairs({ "finger", "subject" }) do
        it("grouped by " .. by .. " never share an identity", function()
            local key = by == "finger" and "finger_id" or "subject"
            local parts = { ds:split({ 0.5, 0.25, 0.25 }, { seed = 5, by = by }) }
            local owner = {}
            local total = 0
            for j, part in ipairs(parts) do
                assert(#part > 0)
                total = total + #part
                for i = 1, #part do
                    local id = part:item(i)[key]
                    assert(owner[id] == nil or owner[id] == j, "identity " .. tostring(id) .. " leaks")
                    owner[id] = j
                end
            end
            assert.are.equal(#ds, total)
            local again = { ds:split({ 0.5, 0.25, 0.25 }, { seed = 5, by = by }) }
            for j = 1, 3 do assert.are.same(paths(parts[j]), paths(again[j])) end
        end)
    end

    it("grouped by finger come close to the fractions", function()
        local a, b = ds:split({ 0.75, 0.25 }, { seed = 3, by = "finger" })
        -- 24 fingers of 9 items: the test part holds 6 fingers (54 items)
        assert(math.abs(#b - 0.25 * #ds) <= 9, #b)
        assert.are.equal(#ds, #a + #b)
        local custom = { ds:split({ 0.5, 0.5 }, { seed = 3, by = function(it) return it.hand end }) }
        assert.are_not.equal(custom[1]:item(1).hand, custom[2]:item(1).hand)
    end)

    it("reject bad fractions and impossible groupings", function()
        assert.truthy(err_of(ds.split, ds, { 0.8, 0.3 }):find("sum"))
        assert.truthy(err_of(ds.split, ds, { 1.2 }):find("fraction"))
        assert.truthy(err_of(ds.split, ds, 0.5, { by = "colour" }):find("colour"))
        local fvc = data.fvc(FVC)
        assert.truthy(err_of(fvc.split, fvc, 0.5, { by = "subject" }):find("subject"))
        local few = data.fvc(FVC .. "/DB1_B")
        local e = err_of(few.split, few, { 0.2, 0.2, 0.2, 0.2, 0.1, 0.1 }, { by = "finger" })
        assert.truthy(e:find("too few"), e)
        assert.truthy(err_of(few.split, few, { 0.01, 0.99 }):find("empty"))
    end)
end)

-- ---- cache -------------------------------------------------------------------------------

describe("the cache file", function()
    local dir = TMP .. "/many"
    local N = 3000
    mkdir(dir)
    whorl.manual_seed(1)
    local base = fake_print(24, 24, 1)
    for i = 1, N do
        local img = base + whorl.rand({ 24, 24 }) * 0.05
        image.write(("%s/img%04d.bmp"):format(dir, i), img:clamp(0, 1))
    end
    local cache = TMP .. "/cache/many.whds"
    local opts = { size = 20, cache = cache, equalize = "hist" }

    it("makes the second load of thousands of images fast", function()
        local t0 = os.clock()
        local ds = data.folder(dir, opts):load()
        local build = os.clock() - t0
        assert.truthy(ds:cache_status():find("^built"), ds:cache_status())
        local x1 = ds:get(N)
        local clock, wall = os.clock(), os.time()
        local again = data.folder(dir, opts):load()
        local second = os.clock() - clock
        assert.are.equal("loaded", again:cache_status())
        assert(second < 0.5 and os.time() - wall <= 1, ("second load took %.3f s"):format(second))
        assert.are.equal(0, maxdiff(again:get(N), x1))
        assert.are.equal(0, maxdiff(again.shared.pixels, ds.shared.pixels))
        print(("\n    %d images: built in %.2f s (CPU), loaded from the cache in %.3f s"):format(N, build, second))
    end)

    it("rebuilds a stale cache: a changed file or changed options", function()
        image.write(dir .. "/img0007.bmp", whorl.zeros({ 30, 30 }))
        local ds = data.folder(dir, opts):load()
        assert.truthy(ds:cache_status():find("stale"), ds:cache_status())
        assert.are.equal(0, ds:get(7):max():item()) -- the new content
        assert.are.equal("loaded", data.folder(dir, opts):load():cache_status())
        local other = data.folder(dir, { size = 20, cache = cache, equalize = "clahe" }):load()
        assert.truthy(other:cache_status():find("stale"), other:cache_status())
        os.remove(dir .. "/img0100.bmp")
        local fewer = data.folder(dir, opts):load()
        assert.truthy(fewer:cache_status():find("stale"), fewer:cache_status())
        assert.are.equal(N - 1, #fewer)
    end)

    it("detects a corrupt cache and never trusts it", function()
        local ds = data.folder(dir, opts):load()
        local good = slurp(cache)
        local function corrupt(bytes, expect)
            spit(cache, bytes)
            local d = data.folder(dir, opts):load()
            assert.truthy(d:cache_status():find(expect, 1, true), d:cache_status())
            assert.are.equal(0, maxdiff(d.shared.pixels, ds.shared.pixels))
        end
        local mid = #good // 2
        corrupt(good:sub(1, mid) .. string.char((good:byte(mid + 1) + 1) % 256) .. good:sub(mid + 2),
            "pixel checksum")
        corrupt(good:sub(1, 200) .. "\255\255" .. good:sub(203), "metadata checksum")
        corrupt(good:sub(1, 30) .. "\7" .. good:sub(32), "header checksum")
        corrupt(good:sub(1, #good - 10), "corrupt")
        corrupt("", "corrupt")
        corrupt("hello, not a cache at all, but long enough to hold a header of 72 bytes..........",
            "not a whorl dataset cache")
        assert.are.equal("loaded", data.folder(dir, opts):load():cache_status())
    end)

    it("defaults to a file under $WHORL_CACHE with cache = true", function()
        -- os.getenv cannot be set from Lua; run a child with the variable.
        local script = TMP .. "/cache_child.lua"
        spit(script, ("local d = require('whorl').data.folder(%q, {size = 8, cache = true}):load(); " ..
            "io.write(d.shared.cache_path, ' ', d:cache_status())"):format(TMP .. "/mixed"))
        local cmd = ("WHORL_CACHE=%s/defcache LUA_PATH=%q LUA_CPATH=%q lua5.4 %s"):format(TMP,
            package.path, package.cpath, script)
        local p = io.popen(cmd)
        local out = p:read("a")
        p:close()
        assert.truthy(out:find("^" .. TMP .. "/defcache/folder%-mixed%-%x+%.whds built"), out)
        p = io.popen(cmd)
        out = p:read("a")
        p:close()
        assert.truthy(out:find("loaded$"), out)
    end)
end)

-- ---- batches ---------------------------------------------------------------------------------

describe("batches", function()
    local ds = data.socofing(SOC, { size = 16 })
    local n = #ds

    local function collect(loader, epoch)
        local xs, ys, idxs = {}, {}, {}
        for x, y, idx in loader:epoch(epoch) do
            xs[#xs + 1], ys[#ys + 1], idxs[#idxs + 1] = x, y, idx
        end
        return xs, ys, idxs
    end

    it("have shape (N,1,H,W), the last one smaller, or dropped", function()
        local sizes = {}
        for x, y in ds:batches(50, { shuffle = false }) do
            assert.are.same({ 16, 16 }, { x:size(3), x:size(4) })
            assert.are.same(x:size(), y:size())
            assert.are.equal(1, x:size(2))
            assert.are.equal("float32", x:dtype())
            sizes[#sizes + 1] = x:size(1)
        end
        assert.are.same({ 50, 50, 50, 50, n - 200 }, sizes)
        local count = 0
        for x in ds:batches(50, { drop_last = true }) do
            count = count + 1
            assert.are.equal(50, x:size(1))
        end
        assert.are.equal(4, count)
    end)

    it("hold the items' images, inputs with their targets", function()
        local loader = ds:loader(7, { seed = 3 })
        local xs, ys, idxs = collect(loader, 2)
        local seen = {}
        for b = 1, #xs do
            for k, i in ipairs(idxs[b]) do
                assert.is_nil(seen[i])
                seen[i] = true
                if b % 9 == 1 then
                    local x, y = ds:get(i)
                    assert.are.equal(0, maxdiff(xs[b][k], x))
                    assert.are.equal(0, maxdiff(ys[b][k], y))
                end
            end
        end
        local count = 0
        for _ in pairs(seen) do count = count + 1 end
        assert.are.equal(n, count)
        loader:close()
    end)

    it("shuffle per epoch, deterministically by seed", function()
        local l1, l2 = ds:loader(16, { seed = 11 }), ds:loader(16, { seed = 11 })
        local _, _, e1 = collect(l1, 1)
        local _, _, e1b = collect(l2, 1)
        local _, _, e2 = collect(l1, 2)
        assert.are.same(e1, e1b)
        assert.are_not.same(e1, e2)
        local _, _, other = collect(ds:loader(16, { seed = 12 }), 1)
        assert.are_not.same(e1, other)
        local _, _, plain = collect(ds:loader(16, { shuffle = false }), 1)
        assert.are.same({ 1, 2, 3 }, { plain[1][1], plain[1][2], plain[1][3] })
        l1:close()
        l2:close()
    end)

    it("the background thread gives exactly the synchronous batches", function()
        local bg = ds:loader(13, { seed = 4, background = true, prefetch = 3 })
        local sync = ds:loader(13, { seed = 4, background = false })
        for epoch = 1, 3 do
            local xb, yb, ib = collect(bg, epoch)
            local xs, ys, is = collect(sync, epoch)
            assert.are.equal(#xs, #xb)
            assert.are.same(is, ib)
            for b = 1, #xs do
                assert.are.equal(0, maxdiff(xs[b], xb[b]))
                assert.are.equal(0, maxdiff(ys[b], yb[b]))
            end
        end
        bg:close()
        sync:close()
    end)

    it("survive breaking out early and restarting mid-epoch", function()
        local loader = ds:loader(5, { seed = 9 })
        for _ = 1, 20 do
            local k = 0
            for _ in loader:epoch(1) do
                k = k + 1
                if k == 3 then break end
            end
        end
        local xs, _, idxs = collect(loader, 1)
        local sync = ds:loader(5, { seed = 9, background = false })
        local xs2, _, idxs2 = collect(sync, 1)
        assert.are.same(idxs2, idxs)
        assert.are.equal(0, maxdiff(xs[#xs], xs2[#xs2]))
        for _ in ds:batches(5) do break end -- the loop's to-be-closed loader ends its thread
        loader:close()
        sync:close()
        assert.truthy(err_of(function() loader:epoch(1) end):find("closed"))
        assert.truthy(err_of(ds.loader, ds, 0):find("batch size"))
    end)

    it("work on an unpaired split", function()
        local fvc = data.fvc(FVC, { size = 12 })
        local train = fvc:split(0.75, { seed = 2, by = "finger" })
        local total = 0
        for x, y, idx in train:batches(4, { seed = 1 }) do
            assert.is_nil(y)
            assert.are.equal(#idx, x:size(1))
            total = total + x:size(1)
        end
        assert.are.equal(#train, total)
    end)
end)
