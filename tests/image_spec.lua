-- whorl.image file I/O: every fixture of tests/fixtures/image (written by
-- make_images.py with the header variants of the real datasets, and checked
-- there against PIL) decodes to its expected pixels; corrupt, truncated,
-- empty and oversized files give errors naming the file; PNG/TIFF/PGM/BMP
-- round trips.
local whorl = require "whorl"
local cjson = require "cjson"
local files = require "helpers.files"
local slurp, spit = files.slurp, files.spit
local image = whorl.image

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local FIX = HERE .. "fixtures/image/"

local manifest = cjson.decode(slurp(FIX .. "manifest.json")).files
local by_name = {}
for _, e in ipairs(manifest) do by_name[e.file] = e end

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p " .. TMP))

local function expected(e)
    return whorl.from_bytes(slurp(FIX .. "expected/" .. e.file .. ".raw"), e.dtype,
        {e.channels, e.height, e.width})
end

local function maxdiff(a, b) return (a:double() - b:double()):abs():max():item() end
local function meandiff(a, b) return (a:double() - b:double()):abs():mean():item() end

-- Raises unless calling fn errors with a message that names `path`.
local function assert_error_naming(path, fn, ...)
    local ok, err = pcall(fn, ...)
    assert(not ok, "expected an error for " .. path)
    err = tostring(err)
    assert(err:find(path, 1, true), "the error does not name the file: " .. err)
    return err
end

describe("image.read on every fixture format", function()
    for _, e in ipairs(manifest) do
        it(e.file .. " (" .. e.variant .. ")", function()
            local want = expected(e)
            local got = image.read(FIX .. e.file, { grey = false, dtype = e.dtype })
            assert.are.same({ e.channels, e.height, e.width }, got:size())
            assert.are.equal(e.dtype, got:dtype())
            local scale = e.dtype == "uint8" and 1 or 255
            local d = maxdiff(got, want) * scale
            assert(d <= e.tolerance + 1e-4, string.format("%s: max difference %g > %g", e.file, d,
                e.tolerance))
            local m = meandiff(got, want) * scale
            assert(m <= e.mean_tolerance + 1e-6, string.format("%s: mean difference %g", e.file, m))
        end)
    end

    it("reports header information", function()
        for _, e in ipairs(manifest) do
            local info = image.info(FIX .. e.file)
            assert.are.equal(e.width, info.width, e.file)
            assert.are.equal(e.height, info.height, e.file)
            assert.are.equal(e.channels, info.channels, e.file)
            assert.are.equal(e.depth or 8, info.depth, e.file)
            assert.are.equal(e.pages or 1, info.pages, e.file)
            local ext = e.file:match("%.(%w+)$"):lower()
            local fmt = ({ bmp = "BMP", tif = "TIFF", png = "PNG", jpg = "JPEG", pgm = "PNM",
                ppm = "PNM" })[ext]
            assert.are.equal(fmt, info.format, e.file)
        end
        local i = image.info(FIX .. "socofing_real_bitfields40.bmp")
        assert.are.equal(32, i.bits)
        assert.are.equal(8, image.info(FIX .. "socofing_altered_pal8.bmp").bits)
        assert.are.equal(16, image.info(FIX .. "grey16.tif").bits)
    end)

    it("converts to grey with ITU-R 601 luma, ignoring alpha", function()
        for _, name in ipairs({ "rgb24.bmp", "rgb8.tif", "rgba.png", "pal8_colour.bmp",
            "socofing_real_bitfields40.bmp", "grey_alpha.png", "socofing_altered_pal8.bmp" }) do
            local e = by_name[name]
            local c = expected(e):double()
            local want
            if e.channels >= 3 then
                want = (c[1] * 0.299 + c[2] * 0.587 + c[3] * 0.114) / 255
            else
                want = c[1] / 255
            end
            local g = image.read(FIX .. name)
            assert.are.same({ e.height, e.width }, g:size())
            assert.are.equal("float32", g:dtype())
            assert(maxdiff(g, want) < 1e-6, name)
            local g8 = image.read(FIX .. name, { dtype = "uint8" })
            assert(maxdiff(g8, want * 255) <= 0.5 + 1e-9, name .. " uint8 rounding")
        end
    end)

    it("keeps 16-bit precision in float and rounds it in uint8", function()
        local e = by_name["grey16.tif"]
        local f64 = image.read(FIX .. e.file, { dtype = "float64" })
        local want = expected(e)[1]:double()
        assert(maxdiff(f64, want) < 1e-7)
        -- 16-bit values that differ by less than 1/255 must differ here.
        local u8 = image.read(FIX .. e.file, { dtype = "uint8" })
        assert(maxdiff(u8, want * 255) <= 0.5 + 1e-6)
        assert.are.equal(0, f64:get(1, 1))
        assert.are.equal(1, f64:get(1, 2))
    end)

    it("reads the first page of a multi-page TIFF", function()
        local first = image.read(FIX .. "multipage.tif", { dtype = "uint8" })
        assert.are.same({ 15, 12 }, first:size())
        assert.are.equal(0, maxdiff(first, expected(by_name["multipage.tif"])[1]))
    end)

    it("decodes from a string as from a file", function()
        local a = image.read(FIX .. "grey8_tiled.tif")
        local b = image.decode(slurp(FIX .. "grey8_tiled.tif"))
        assert.are.equal(0, maxdiff(a, b))
    end)
end)

-- ---------------------------------------------------------------------------------------

local function crc32(s)
    local crc = 0xFFFFFFFF
    for i = 1, #s do
        crc = crc ~ s:byte(i)
        for _ = 1, 8 do
            crc = (crc & 1) == 1 and (0xEDB88320 ~ (crc >> 1)) or (crc >> 1)
        end
    end
    return crc ~ 0xFFFFFFFF
end

-- Returns s with the bytes at pos (1-based) replaced by r.
local function patch(s, pos, r) return s:sub(1, pos - 1) .. r .. s:sub(pos + #r) end

describe("bad files", function()
    local function bad(name, bytes)
        local path = TMP .. "/" .. name
        spit(path, bytes)
        return assert_error_naming(path, image.read, path), path
    end

    it("missing and empty files", function()
        local missing = TMP .. "/no_such_file.png"
        local err = assert_error_naming(missing, image.read, missing)
        assert.truthy(err:find("cannot open"))
        err = bad("empty.bmp", "")
        assert.truthy(err:find("empty"))
        assert_error_naming(TMP, image.read, TMP) -- a folder
        err = bad("not_an_image.png", "GIF89a................")
        assert.truthy(err:find("not a TIFF, BMP, PNG, JPEG or PGM"))
    end)

    -- A truncated file must either fail with the file's name, or decode to
    -- exactly the pixels of the whole file (what is cut is not needed: a BMP's
    -- last row padding, a trailing TIFF tag value, a PNG chunk after the
    -- image...).  Cuts just after the magic, in the header and in the middle
    -- always lose pixels and must fail; so must every cut of a file whose
    -- pixels come last (BMP, PNM, JPEG, IFD-first TIFF).
    local truncatable = {
        ["socofing_real_bitfields40.bmp"] = true, ["socofing_altered_pal8.bmp"] = true,
        ["rle8.bmp"] = true, ["rle4.bmp"] = true, ["pal1.bmp"] = true, ["rgb24_topdown.bmp"] = true,
        ["fvc_grey8_300.tif"] = false, ["grey8_tiled.tif"] = false, ["grey16.tif"] = false,
        ["grey8_lzw.tif"] = false, ["grey8_deflate.tif"] = false, ["rgb8_planar.tif"] = false,
        ["grey8_ifd_first.tif"] = true, ["grey8_deflate_ifd_first.tif"] = true,
        ["grey8.png"] = true, ["rgba.png"] = true, ["grey16.png"] = true, ["grey.jpg"] = true,
        ["rgb_progressive.jpg"] = true, ["grey8.pgm"] = true, ["grey16.pgm"] = true,
        ["rgb.ppm"] = true }
    for name, pixels_last in pairs(truncatable) do
        it("truncated " .. name, function()
            local s = slurp(FIX .. name)
            local whole = image.read(FIX .. name, { grey = false, dtype = "float64" })
            local must_fail = { [2] = true, [9] = true, [30] = true, [#s // 2] = true }
            local cuts = { 2, 9, 30, #s // 4, #s // 2, 3 * #s // 4, #s - 16, #s - 4, #s - 1 }
            local failed = 0
            for _, n in ipairs(cuts) do
                local path = TMP .. "/cut" .. n .. "_" .. name
                spit(path, s:sub(1, n))
                local ok, got = pcall(image.read, path, { grey = false, dtype = "float64" })
                if ok then
                    assert(not must_fail[n] and not (pixels_last and n < #s - 4),
                        name .. " cut to " .. n .. " bytes decoded without an error")
                    assert.are.same(whole:size(), got:size())
                    assert(maxdiff(got, whole) == 0, name .. " cut to " .. n ..
                        " bytes decoded to different pixels")
                else
                    failed = failed + 1
                    assert(tostring(got):find(path, 1, true), "error without the file name: " ..
                        tostring(got))
                    assert(#tostring(got) < 600, "overlong message")
                end
            end
            assert(failed >= 5, name .. ": only " .. failed .. " cuts failed")
            assert.has_error(function() image.info(TMP .. "/cut9_" .. name) end)
        end)
    end

    it("truncated ASCII PGM", function()
        local s = slurp(FIX .. "ascii_maxval9.pgm")
        bad("cut_ascii.pgm", s:sub(1, #s // 2))
        bad("cut_header.pgm", "P2\n17 14\n")
    end)

    it("random bytes after a valid magic", function()
        local magics = { bmp = "BM", tif = "II*\0", tif2 = "MM\0*", png = "\137PNG\r\n\26\n",
            jpg = "\255\216\255", pgm = "P5\n", ppm = "P6 ", pbm = "P4\n" }
        local rng = 12345
        local function byte()
            rng = (rng * 1103515245 + 12345) % 2147483648
            return string.char((rng >> 16) % 256)
        end
        for ext, magic in pairs(magics) do
            for k = 1, 25 do
                local t = {}
                for i = 1, 40 + 37 * k do t[i] = byte() end
                bad(("random%d.%s"):format(k, ext), magic .. table.concat(t))
            end
        end
    end)

    it("huge declared dimensions", function()
        -- BMP: width and height fields at offsets 18 and 22.
        local s = slurp(FIX .. "socofing_real_bitfields40.bmp")
        local err = bad("huge.bmp", patch(s, 19, string.pack("<i4i4", 200000, 200000)))
        assert.truthy(err:find("limit") or err:find("truncated"))
        bad("huge_wide.bmp", patch(s, 19, string.pack("<i4", 2000000)))
        bad("negative_width.bmp", patch(s, 19, string.pack("<i4", -5)))
        bad("zero_height.bmp", patch(s, 23, string.pack("<i4", 0)))
        -- TIFF: the manifest records where the width and height values are.
        local e = by_name["fvc_grey8_300.tif"]
        s = slurp(FIX .. e.file)
        s = patch(patch(s, e.width_offset + 1, string.pack("<I4", 3000000)), e.height_offset + 1,
            string.pack("<I4", 3000000))
        err = bad("huge.tif", s)
        assert.truthy(err:find("limit"), err)
        s = slurp(FIX .. e.file)
        bad("tall.tif", patch(s, e.height_offset + 1, string.pack("<I4", 90000)))
        -- PNG: IHDR with a fresh CRC, so only the size is wrong.
        s = slurp(FIX .. "grey8.png")
        local ihdr = "IHDR" .. string.pack(">I4I4", 1000000, 1000000) .. s:sub(25, 29)
        s = patch(s, 13, ihdr .. string.pack(">I4", crc32(ihdr)))
        err = bad("huge.png", s)
        assert.truthy(err:find("limit") or err:find("large"), err)
        -- JPEG: the frame header (SOF0) height and width.
        s = slurp(FIX .. "grey.jpg")
        local sof = s:find("\255\192", 1, true)
        err = bad("huge.jpg", patch(s, sof + 5, string.pack(">I2I2", 65000, 65000)))
        assert.truthy(err:find("limit"), err)
        -- PGM
        bad("huge.pgm", "P5\n300000 300000\n255\n" .. string.rep("\0", 1000))
        bad("overflow.pgm", "P5\n99999999999999999999 2\n255\n" .. string.rep("\0", 1000))
    end)

    it("corrupt content", function()
        local s = slurp(FIX .. "rgb.png")
        local err = bad("crc.png", patch(s, #s // 2, "\0\1\2"))
        assert.truthy(err:find("CRC") or err:find("corrupt"), err)
        -- a palette index beyond a 16-entry palette
        s = slurp(FIX .. "pal8_16colours.bmp")
        local off = string.unpack("<I4", s, 11)
        err = bad("palette_index.bmp", patch(s, off + 1, "\200"))
        assert.truthy(err:find("palette"), err)
        -- RLE run overflowing its row
        s = slurp(FIX .. "rle8.bmp")
        off = string.unpack("<I4", s, 11)
        err = bad("rle_overflow.bmp", patch(s, off + 1, "\250\7"))
        assert.truthy(err:find("overflows"), err)
        -- unsupported compression and bit depth
        s = slurp(FIX .. "rgb24.bmp")
        err = bad("jpeg_in_bmp.bmp", patch(s, 31, string.pack("<I4", 4)))
        assert.truthy(err:find("unsupported"), err)
        err = bad("bpp7.bmp", patch(s, 29, string.pack("<I2", 7)))
        assert.truthy(err:find("bits per pixel"), err)
        -- PGM sample above maxval
        err = bad("above_max.pgm", "P2\n2 1\n9\n3 10\n")
        assert.truthy(err:find("maximum"), err)
        -- a JPEG whose scan data was overwritten
        s = slurp(FIX .. "grey.jpg")
        bad("no_eoi.jpg", s:sub(1, #s - 2) .. "\0\0")
        -- a Huffman table declaring more than 256 symbols (overflows
        -- stb_image 2.27's tables; found by the fuzz target)
        local dht = s:find("\255\196", 1, true)
        err = bad("dht_overflow.jpg", patch(s, dht + 5, string.rep("\40", 16)))
        assert.truthy(err:find("Huffman"), err)
        -- a scan that uses Huffman tables no DHT defined (stb would read
        -- uninitialised tables; also found by fuzzing)
        local sos = s:find("\255\218", 1, true)
        err = bad("undefined_table.jpg", patch(s, sos + 6, "\17"))
        assert.truthy(err:find("never defined"), err)
    end)

    it("never prints libtiff messages", function()
        -- libtiff's default handlers write to stderr; ours keep the text for
        -- the error.  Run a bad TIFF in a child and look at its stderr.
        local s = slurp(FIX .. "grey8_lzw.tif")
        local path = TMP .. "/quiet.tif"
        spit(path, s:sub(1, #s - 40))
        local script = TMP .. "/quiet.lua"
        spit(script, ("local w = require 'whorl'; local ok, e = pcall(w.image.read, %q); " ..
            "io.write(ok and 'OK' or 'ERR')"):format(path))
        local cmd = ("LUA_PATH=%q LUA_CPATH=%q lua5.4 %s 2>%s/stderr.txt"):format(
            package.path, package.cpath, script, TMP)
        local p = io.popen(cmd)
        local out = p:read("a")
        p:close()
        assert.are.equal("ERR", out)
        assert.are.equal("", slurp(TMP .. "/stderr.txt"))
    end)
end)

describe("image.write", function()
    local function roundtrip(name, t, opts, read_opts)
        local path = TMP .. "/" .. name
        image.write(path, t, opts)
        return image.read(path, read_opts)
    end

    it("round-trips uint8 images exactly", function()
        whorl.manual_seed(7)
        local grey = (whorl.rand({ 21, 34 }) * 255):byte()
        local rgb = (whorl.rand({ 3, 9, 13 }) * 255):byte()
        local rgba = (whorl.rand({ 4, 9, 13 }) * 255):byte()
        for _, ext in ipairs({ "png", "tif", "tiff", "pgm", "bmp", "PNG", "TIF" }) do
            local back = roundtrip("g." .. ext, grey, nil, { grey = false, dtype = "uint8" })
            assert.are.equal(0, maxdiff(back, grey:view(1, 21, 34)), ext)
        end
        for _, ext in ipairs({ "png", "tif", "ppm", "bmp" }) do
            local back = roundtrip("c." .. ext, rgb, nil, { grey = false, dtype = "uint8" })
            assert.are.equal(0, maxdiff(back, rgb), ext)
        end
        for _, ext in ipairs({ "png", "tif" }) do
            local back = roundtrip("a." .. ext, rgba, nil, { grey = false, dtype = "uint8" })
            assert.are.equal(0, maxdiff(back, rgba), ext)
        end
        for _, c in ipairs({ "lzw", "deflate", "none" }) do
            local back = roundtrip("z" .. c .. ".tif", grey, { compression = c }, { dtype = "uint8" })
            assert.are.equal(0, maxdiff(back, grey), c)
        end
    end)

    it("round-trips float images to 8 and 16 bits", function()
        whorl.manual_seed(8)
        local x = whorl.rand({ 17, 23 })
        for _, ext in ipairs({ "png", "tif", "pgm", "bmp" }) do
            local back = roundtrip("f." .. ext, x, nil, {})
            assert(maxdiff(back, x) <= 0.5 / 255 + 1e-6, ext)
        end
        for _, ext in ipairs({ "tif", "pgm" }) do
            local back = roundtrip("f16." .. ext, x, { bits = 16 }, { dtype = "float64" })
            assert(maxdiff(back, x) <= 0.5 / 65535 + 1e-7, ext)
            assert.are.equal(16, image.info(TMP .. "/f16." .. ext).depth)
        end
        -- out-of-range values are clamped
        local y = whorl.tensor({ { -0.5, 0.25, 1.5 } })
        local back = roundtrip("clamp.png", y, nil, { dtype = "uint8" })
        assert.are.same({ { 0, 64, 255 } }, back:totable())
    end)

    it("writes JPEG, lossy within its quality, grey or colour", function()
        -- a smooth image: JPEG's 8x8 DCT keeps it well at the default quality 95
        local ramp = {}
        for y = 1, 32 do
            ramp[y] = {}
            for x = 1, 48 do ramp[y][x] = 0.5 + 0.4 * math.sin(x / 6) * math.cos(y / 9) end
        end
        local grey = whorl.tensor(ramp)
        for _, ext in ipairs({ "jpg", "jpeg", "JPG" }) do
            local back = roundtrip("j." .. ext, grey, nil, {})
            assert.are.same({ 32, 48 }, back:size())
            assert(meandiff(back, grey) < 0.01, ext .. " mean error " .. meandiff(back, grey))
            assert.are.equal("JPEG", image.info(TMP .. "/j." .. ext).format)
        end
        local rgb = whorl.cat({ grey:view(1, 32, 48), (1 - grey):view(1, 32, 48), (grey * 0.5):view(1, 32, 48) }, 1)
        local back = roundtrip("c.jpg", rgb, nil, { grey = false })
        assert.are.same({ 3, 32, 48 }, back:size())
        assert(meandiff(back, rgb) < 0.02, "colour mean error " .. meandiff(back, rgb))
        -- a lower quality is a smaller file and a larger error
        whorl.manual_seed(10)
        local noisy = whorl.rand({ 64, 64 })
        image.write(TMP .. "/q95.jpg", noisy)
        image.write(TMP .. "/q20.jpg", noisy, { quality = 20 })
        local function size(p) local f = assert(io.open(p, "rb")); local n = f:seek("end"); f:close(); return n end
        assert(size(TMP .. "/q20.jpg") < size(TMP .. "/q95.jpg"))
        assert(meandiff(image.read(TMP .. "/q20.jpg"), noisy) > meandiff(image.read(TMP .. "/q95.jpg"), noisy))
        local p = TMP .. "/bad.jpg"
        assert_error_naming(p, image.write, p, grey, { quality = 0 })
        assert_error_naming(p, image.write, p, grey, { quality = 101 })
        assert_error_naming(p, image.write, p, grey, { bits = 16 })
        assert_error_naming(p, image.write, p, whorl.rand({ 2, 4, 4 }))
    end)

    it("rejects what it cannot write", function()
        local x = whorl.rand({ 4, 4 })
        local p = TMP .. "/x.gif"
        assert_error_naming(p, image.write, p, x)
        p = TMP .. "/x16.png"
        assert_error_naming(p, image.write, p, x, { bits = 16 })
        p = TMP .. "/x.png"
        assert_error_naming(p, image.write, p, whorl.rand({ 2, 3, 4, 4 }))
        assert_error_naming(p, image.write, p, whorl.rand({ 5, 4, 4 }))
        local nan = whorl.zeros({ 3, 3 })
        nan:set(2, 2, 0 / 0)
        local err = assert_error_naming(p, image.write, p, nan)
        assert.truthy(err:find("NaN"))
        p = TMP .. "/x.pgm"
        assert_error_naming(p, image.write, p, whorl.rand({ 4, 4, 4 }))
        p = TMP .. "/no_such_dir/x.png"
        assert_error_naming(p, image.write, p, x)
        assert.has_error(function() image.write(TMP .. "/y.tif", x, { compression = "zip" }) end)
    end)

    it("writes views and non-contiguous tensors correctly", function()
        whorl.manual_seed(9)
        local big = (whorl.rand({ 3, 10, 12 }) * 255):byte()
        local view = big:transpose(2, 3) -- (3, 12, 10), strided
        local back = roundtrip("view.png", view, nil, { grey = false, dtype = "uint8" })
        assert.are.equal(0, maxdiff(back, view))
    end)
end)
