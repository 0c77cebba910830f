-- `whorl restore`: restore fingerprint image files with a trained model.
--
--   whorl restore --model run/model.safetensors IN... --out DIR
--                 [--mode tile|resize] [--size N] [--overlap N] [--batch-size N] [--dpi N]
--
-- IN: image files (TIFF, BMP, PNG, JPEG, PGM/PPM; colour is turned grey) or
-- folders (every image inside, subfolders too, kept as subfolders of DIR).
-- Each result goes to DIR with the input's file name, format and size; a
-- 16-bit TIFF or PGM stays 16-bit; JPEG is written at quality 95.
--
-- The model works on tiles of its training size: --size, else config.json
-- beside the checkpoint (written by `whorl reconstruct`), else the model's
-- input layer.
--   tile    (default) the image is cut into overlapping tiles of that size,
--           each restored, and put back with a raised-cosine (Tukey) weight
--           over the overlaps, so large images keep their resolution and
--           tile seams do not show; images smaller than a tile are padded
--           with their background first.
--   resize  the whole image is resized to the training size, restored and
--           resized back (fast; fine detail of large images is lost).
-- With --dpi (the inputs' resolution) and a training dpi in config.json,
-- images are resampled to the training resolution first and back after.
--
-- A file that cannot be read or written is reported (naming it) and the
-- others are still restored; the command then fails, saying how many did.
local argparse = require "argparse"
local cjson = require "cjson"
local whorl = require "whorl"

local M = {}

local function fail(fmt, ...) error("whorl restore: " .. string.format(fmt, ...), 0) end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function readable(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- ---- the model and its input size ---------------------------------------------------------------

-- The {h, w} of an Input layer anywhere in a model's config, or nil (fully
-- convolutional models take any size).
local function input_shape(config)
    if type(config) ~= "table" then return nil end
    if config.type == "Input" and type(config.args) == "table" and type(config.args[1]) == "table" then
        local shape = config.args[1].shape
        if type(shape) == "table" and #shape == 3 and shape[2] > 0 and shape[3] > 0 then
            return { math.tointeger(shape[2]), math.tointeger(shape[3]) }
        end
    end
    for _, v in pairs(config) do
        local s = input_shape(v)
        if s then return s end
    end
    return nil
end

-- The model, and {size = {h, w}, dpi =} from --size, config.json beside
-- the checkpoint, or the model's input layer (in that order).
function M.load_model(path, size)
    if not readable(path) then fail("model file not found: %s", path) end
    local ok, model = pcall(whorl.load, path)
    if not ok then fail("%s is not a whorl model checkpoint: %s", path, tostring(model):gsub("^whorl%.load: ", "")) end
    local info = {}
    local config_path = dirname(path) .. "/config.json"
    local f = io.open(config_path, "rb")
    if f then
        local text = f:read("a")
        f:close()
        local decoded, config = pcall(cjson.decode, text)
        if decoded and type(config) == "table" then
            info.dpi = tonumber(config.dpi)
            local s = tonumber(config.size)
            if s then info.size = { math.tointeger(s), math.tointeger(s) } end
        else
            io.stderr:write(string.format("whorl restore: ignoring %s: not valid JSON\n", config_path))
        end
    end
    local fixed = input_shape(model:config())
    if size then
        if fixed and (fixed[1] ~= size or fixed[2] ~= size) then
            fail("--size %d does not fit the model, which takes %dx%d images", size, fixed[1], fixed[2])
        end
        info.size = { size, size }
    end
    info.size = fixed or info.size
    if not info.size then
        fail("cannot tell the input size of %s (no config.json beside it, no input layer); give --size N", path)
    end
    return model, info
end

-- ---- tiling ---------------------------------------------------------------------------------------

-- 0-based offsets of tiles of `size` covering `length` with at least
-- `overlap` pixels shared by neighbours; the last tile ends at the border.
function M.tile_offsets(length, size, overlap)
    if length <= size then return { 0 } end
    local stride = math.max(1, size - overlap)
    local offsets, at = {}, 0
    while at + size < length do
        offsets[#offsets + 1] = at
        at = at + stride
    end
    offsets[#offsets + 1] = length - size
    return offsets
end

-- 1-D Tukey window of n samples, a raised cosine over `taper` samples at
-- each end and 1 between.  Neighbouring tiles `taper` apart sum to 1 over
-- their overlap; the samples never reach 0, so pixels at the image border,
-- covered by a taper of one tile only, keep a weight.
local function tukey(n, taper)
    local w = {}
    for i = 0, n - 1 do
        local d = math.min(i, n - 1 - i)
        w[i + 1] = d < taper and 0.5 - 0.5 * math.cos(math.pi * (d + 0.5) / taper) or 1.0
    end
    return w
end

-- The 2-D blending weight of an h x w tile (outer product of Tukey windows).
function M.window(h, w, overlap)
    local wy, wx = tukey(h, math.min(overlap, h // 2)), tukey(w, math.min(overlap, w // 2))
    return whorl.tensor(wy):view(h, 1) * whorl.tensor(wx):view(1, w)
end

-- Restores an (H,W) image in [0,1] tile by tile: tiles of size {th, tw}
-- sharing `overlap` pixels, batch_size at a time through the model,
-- blended with M.window.  Returns (H,W).
function M.restore_tiled(model, img, size, overlap, batch_size)
    local H, W = img:size()[1], img:size()[2]
    local th, tw = size[1], size[2]
    local ph, pw = math.max(H, th), math.max(W, tw)
    if ph > H or pw > W then -- smaller than a tile: pad with the background, centred
        local top, left = (ph - H) // 2, (pw - W) // 2
        img = whorl.pad(img, { left, pw - W - left, top, ph - H - top }, "constant", whorl.image.background(img))
        local out = M.restore_tiled(model, img, size, overlap, batch_size)
        return out:narrow(1, top + 1, H):narrow(2, left + 1, W):contiguous()
    end
    local ys, xs = M.tile_offsets(H, th, overlap), M.tile_offsets(W, tw, overlap)
    local tiles = {}
    for _, y in ipairs(ys) do for _, x in ipairs(xs) do tiles[#tiles + 1] = { y, x } end end
    local weight = M.window(th, tw, overlap)
    local acc, wsum = whorl.zeros(H, W), whorl.zeros(H, W)
    for first = 1, #tiles, batch_size do
        local last = math.min(#tiles, first + batch_size - 1)
        local batch = {}
        for k = first, last do
            local y, x = tiles[k][1], tiles[k][2]
            batch[#batch + 1] = img:narrow(1, y + 1, th):narrow(2, x + 1, tw):contiguous():view(1, 1, th, tw)
        end
        local out = whorl.predict(model, whorl.cat(batch, 1), { batch_size = #batch })
        for k = first, last do
            local y, x = tiles[k][1], tiles[k][2]
            acc:narrow(1, y + 1, th):narrow(2, x + 1, tw):add_(out[k - first + 1][1] * weight)
            wsum:narrow(1, y + 1, th):narrow(2, x + 1, tw):add_(weight)
        end
    end
    return acc / wsum
end

-- Restores an (H,W) image by resizing it to `size`, and back.
function M.restore_resized(model, img, size)
    local H, W = img:size()[1], img:size()[2]
    local x = whorl.image.resize(img, size[1], size[2]):view(1, 1, size[1], size[2])
    local y = whorl.predict(model, x, { batch_size = 1 })
    return whorl.image.resize(y[1][1], H, W)
end

-- ---- files ----------------------------------------------------------------------------------------

local WRITABLE = { png = true, tif = true, tiff = true, bmp = true, pgm = true, ppm = true, pnm = true,
    jpg = true, jpeg = true }
local EXT_OF_FORMAT = { TIFF = "tif", BMP = "bmp", PNG = "png", PNM = "pgm", JPEG = "jpg" }

-- The output name for an input's relative name: the same, unless whorl
-- cannot write under that extension (a JPEG named .jfif, say): the format's own.
local function output_name(rel, format)
    local stem, ext = rel:match("^(.*)%.([^./]+)$")
    if ext and WRITABLE[ext:lower()] then return rel end
    return (stem or rel) .. "." .. (EXT_OF_FORMAT[format] or "png")
end

-- Every input as {path =, rel =}: files as given (rel = their base name),
-- folders expanded (rel = the path inside the folder).
local function expand_inputs(inputs, failures)
    local C = require("whorl.core")._data
    local list = {}
    for _, path in ipairs(inputs) do
        if C.is_dir(path) then
            local ok, files = pcall(C.list_images, path, true)
            if not ok then
                failures[#failures + 1] = string.format("%s: %s", path, tostring(files))
            elseif #files == 0 then
                failures[#failures + 1] = string.format("%s: a folder with no images (.tif .bmp .png .jpg .pgm ...)", path)
            end
            for _, rel in ipairs(ok and files or {}) do
                list[#list + 1] = { path = path:gsub("/+$", "") .. "/" .. rel, rel = rel }
            end
        else
            list[#list + 1] = { path = path, rel = path:match("([^/]+)$") or path }
        end
    end
    return list
end

local realpaths = {}
local function realpath(path)
    if realpaths[path] then return realpaths[path] end
    local p = io.popen("realpath -m -- " .. quote(path) .. " 2>/dev/null")
    local r = p and p:read("l")
    if p then p:close() end
    realpaths[path] = r or path
    return realpaths[path]
end

-- Makes the output folder (and subfolders) and checks it can be written.
local function prepare_folder(dir)
    if not os.execute("mkdir -p -- " .. quote(dir) .. " 2>/dev/null") then
        fail("cannot create the output folder %s", dir)
    end
    local probe = string.format("%s/.whorl-restore-%d.tmp", dir, math.random(1, 1 << 30))
    local f, err = io.open(probe, "wb")
    if not f then fail("cannot write to the output folder %s: %s", dir, tostring(err)) end
    f:close()
    os.remove(probe)
end

-- Reads, restores and writes one image; errors name the file.
local function restore_file(model, info, item, meta, out_path, a)
    local img = whorl.image.read(item.path, { grey = true })
    local H, W = img:size()[1], img:size()[2]
    local resampled = a.dpi and info.dpi and a.dpi ~= info.dpi
    if resampled then img = whorl.image.resample_dpi(img, a.dpi, info.dpi) end
    local out
    if a.mode == "resize" then out = M.restore_resized(model, img, info.size)
    else out = M.restore_tiled(model, img, info.size, a.overlap, a.batch_size) end
    if resampled then out = whorl.image.resize(out, H, W) end
    local ext = out_path:match("%.([^./]+)$"):lower()
    local bits = (meta.depth == 16 and (ext == "tif" or ext == "tiff" or ext == "pgm")) and 16 or 8
    -- atomically: a temporary file with the same extension (the writer
    -- goes by it), renamed over the target
    local tmp = string.format("%s/.%s.tmp-%d.%s", dirname(out_path), out_path:match("([^/]+)$"),
        math.random(1, 1 << 30), ext)
    local ok, err = pcall(whorl.image.write, tmp, out, { bits = bits })
    if not ok then
        os.remove(tmp)
        error(string.format("%s: cannot write %s: %s", item.path, out_path, tostring(err)), 0)
    end
    local moved, merr = os.rename(tmp, out_path)
    if not moved then
        os.remove(tmp)
        error(string.format("%s: cannot write %s: %s", item.path, out_path, tostring(merr)), 0)
    end
    return H, W
end

function M.run(argv)
    local parser = argparse("whorl restore", "Restore fingerprint images with a trained model.")
    parser:argument("inputs", "Image files or folders of images."):args("+")
    parser:option("--model", "Checkpoint written by whorl reconstruct (model.safetensors)."):args(1)
    parser:option("--out", "Output folder (created when missing)."):args(1)
    parser:option("--mode", "tile: overlapping tiles at full resolution; resize: the whole image at the model's size.",
        "tile"):choices({ "tile", "resize" })
    parser:option("--size", "Tile / input size (default: config.json beside the model, else its input layer).",
        nil, tonumber)
    parser:option("--overlap", "Pixels shared by neighbouring tiles (default: a quarter of the tile).", nil, tonumber)
    parser:option("--batch-size", "Tiles per forward pass.", "16", tonumber)
    parser:option("--dpi", "Resolution of the input images (resampled to the training dpi when config.json gives one).",
        nil, tonumber)
    parser:flag("--quiet", "Print nothing but errors.")
    local a = parser:parse(argv)
    if not a.model then fail("--model PATH is required (a model.safetensors from whorl reconstruct)") end
    if not a.out then fail("--out DIR is required") end
    local function positive_integer(v, name)
        if v ~= nil and (math.tointeger(v) == nil or v < 1) then fail("%s must be a positive integer", name) end
        return math.tointeger(v)
    end
    a.size = positive_integer(a.size, "--size")
    a.batch_size = positive_integer(a.batch_size, "--batch-size")
    if a.dpi ~= nil and a.dpi <= 0 then fail("--dpi must be positive") end

    local model, info = M.load_model(a.model, a.size)
    local overlap = a.overlap or math.min(info.size[1], info.size[2]) // 4
    if math.tointeger(overlap) == nil or overlap < 0 or overlap >= math.min(info.size[1], info.size[2]) then
        fail("--overlap must be an integer in 0..%d", math.min(info.size[1], info.size[2]) - 1)
    end
    a.overlap = math.tointeger(overlap)
    prepare_folder(a.out)
    local out_real = realpath(a.out)

    local failures = {}
    local items = expand_inputs(a.inputs, failures)
    for _, msg in ipairs(failures) do io.stderr:write("whorl restore: ", msg, "\n") end
    local inputs = #items + #failures
    local taken, done = {}, 0
    for _, item in ipairs(items) do
        local ok, err = pcall(function()
            local meta = whorl.image.info(item.path)
            local name = output_name(item.rel, meta.format)
            local out_path = a.out .. "/" .. name
            if taken[out_path] then error(string.format("%s: %s was already written from %s", item.path, out_path,
                taken[out_path]), 0) end
            if realpath(dirname(item.path)) .. "/" .. item.path:match("([^/]+)$") == out_real .. "/" .. name then
                error(string.format("%s: refusing to overwrite the input (--out is its folder)", item.path), 0)
            end
            if name:find("/") then prepare_folder(dirname(out_path)) end
            local H, W = restore_file(model, info, item, meta, out_path, a)
            taken[out_path] = item.path
            done = done + 1
            if not a.quiet then print(string.format("%s (%dx%d) -> %s", item.path, W, H, out_path)) end
        end)
        if not ok then
            -- errors raised in C carry the Lua line that called them; the file name says more
            local msg = tostring(err):gsub("^[^:]*%.lua:%d+: ", "")
            if not msg:find(item.path, 1, true) then msg = item.path .. ": " .. msg end
            failures[#failures + 1] = msg
            io.stderr:write("whorl restore: ", msg, "\n")
        end
    end
    if #failures > 0 then
        fail("%d of %d input%s failed (restored %d)", #failures, inputs, inputs == 1 and "" or "s", done)
    end
    if not a.quiet then
        print(string.format("restored %d image%s into %s (%s mode, %dx%d %s)", done, done == 1 and "" or "s", a.out,
            a.mode, info.size[1], info.size[2], a.mode == "tile" and "tiles" or "model input"))
    end
end

return M
