-- whorl.data: fingerprint datasets.
--
--   data.folder(dir, opts)                 every image under dir (recursive)
--   data.paired(damaged_dir, clean_dir, opts)  same relative names in both
--   data.socofing(root, opts)              Real/ and Altered/Altered-{Easy,Medium,Hard}/
--   data.fvc(dir, opts)                    <finger>_<impression>.tif
--   data.detect(dir, opts)                 one of the above, by the names found
--
-- A dataset is a list of items (ds.items[i]: path, name and what the layout
-- parses from names; paired items also have target_path); the Dataset and
-- Loader classes are in lua/whorl/data/dataset.lua.
--
-- opts (all layouts):
--   size = 128 | {h, w}     output size of every image (default 128)
--   fit = true              keep the aspect ratio, pad with the background
--   crop = false            crop to the print first (block variance; block,
--                           threshold, margin); a damaged image is cropped
--                           with its clean partner's box
--   dpi, target_dpi         resample from the dataset's resolution
--   equalize = "none" | "hist" | "clahe" (tiles, clip)
--   invert = false
--   dtype = "uint8"         storage: "uint8" (1/255 steps) or "float32"
--   cache = false | true | path   true: $WHORL_CACHE, $XDG_CACHE_HOME/whorl
--                           or ~/.cache/whorl, a file named after the folder
-- and per layout: recursive = true (folder, paired, fvc); levels = {"Easy",
-- ...}, types = {"CR", "Obl", "Zcut"}, include_real = false (socofing: the
-- real images as their own targets too).
--
-- Methods: #ds, ds:item(i), ds:load(), ds:get(i) -> x[, y] (1,H,W) float32,
-- ds:split(fractions, {seed=, by=}) -> parts, ds:subset(indices),
-- ds:batches(n, opts) -> for x, y, idx in ..., ds:loader(n, opts).
local core = require "whorl.core"
local dataset = require "whorl.data.dataset"

local C = core._data
local data = {}

local PREPROCESS_KEYS = dataset.PREPROCESS_KEYS
local KNOWN_OPTS = { dtype = true, cache = true, recursive = true, levels = true, types = true,
    include_real = true }
for _, k in ipairs(PREPROCESS_KEYS) do KNOWN_OPTS[k] = true end

local function check_opts(fname, opts)
    if opts == nil then return {} end
    if type(opts) ~= "table" then
        error(("data.%s: options must be a table, got %s"):format(fname, type(opts)), 3)
    end
    for k in pairs(opts) do
        if not KNOWN_OPTS[k] then error(("data.%s: unknown option '%s'"):format(fname, tostring(k)), 3) end
    end
    return opts
end

local function join(dir, rel)
    return (dir:sub(-1) == "/" and dir or dir .. "/") .. rel
end

local function basename(path) return path:match("([^/]+)$") end
local function stem(name) return name:match("^(.*)%.[^.]+$") or name end

-- The images under dir, or an error naming dir when it is missing or empty.
local function list(fname, dir, recursive)
    if type(dir) ~= "string" then error(("data.%s: the folder must be a string"):format(fname), 3) end
    local ok, files = pcall(C.list_images, dir, recursive ~= false)
    if not ok then error(("data.%s: %s"):format(fname, tostring(files):gsub("^data: ", "")), 3) end
    if #files == 0 then
        error(("data.%s: no images in %s (looked for .tif .tiff .bmp .png .jpg .jpeg .pgm " ..
            ".ppm, any case%s)"):format(fname, dir, recursive ~= false and ", in subfolders too" or ""), 3)
    end
    return files
end

-- A dataset over `items`, whose pixels come from `files` (unique paths).
local new_dataset = dataset.new

-- ---- names ----------------------------------------------------------------------------

local FINGERS = { thumb = true, index = true, middle = true, ring = true, little = true }
local DAMAGE = { CR = "CR", Obl = "Obl", Zcut = "Zcut" }

-- "<subject>__<M|F>_<Left|Right>_<finger>_finger[_CR|_Obl|_Zcut].<ext>", or nil.
function data.parse_socofing_name(name)
    local subject, gender, hand, finger, rest = name:match("^(%d+)__([MF])_(%a+)_(%a+)_finger(.*)$")
    if not subject or (hand ~= "Left" and hand ~= "Right") or not FINGERS[finger] then return nil end
    local damage, ext = rest:match("^_(%a+)%.(%w+)$")
    if damage then
        if not DAMAGE[damage] then return nil end
    else
        ext = rest:match("^%.(%w+)$")
        if not ext then return nil end
    end
    return { subject = tonumber(subject), gender = gender, hand = hand, finger = finger,
        damage = damage, finger_id = ("%s_%s_%s"):format(subject, hand, finger),
        real_name = ("%s__%s_%s_%s_finger.%s"):format(subject, gender, hand, finger, ext) }
end

-- "<finger>_<impression>.<ext>", or nil.
function data.parse_fvc_name(name)
    local finger, impression = name:match("^(%d+)_(%d+)%.%w+$")
    if not finger then return nil end
    return { finger = tonumber(finger), impression = tonumber(impression) }
end

-- ---- layouts ----------------------------------------------------------------------------

function data.folder(dir, opts)
    opts = check_opts("folder", opts)
    local items = {}
    for _, rel in ipairs(list("folder", dir, opts.recursive)) do
        items[#items + 1] = { path = join(dir, rel), rel = rel, name = basename(rel) }
    end
    return new_dataset("folder", dir, items, opts)
end

-- The partner of rel among the files of a folder: the same relative path,
-- or the same path with another image extension when exactly one exists.
local function partner_index(files)
    local exact, by_stem = {}, {}
    for _, rel in ipairs(files) do
        exact[rel] = true
        local s = stem(rel)
        by_stem[s] = by_stem[s] and false or rel -- false: ambiguous
    end
    return function(rel)
        if exact[rel] then return rel end
        return by_stem[stem(rel)] or nil
    end
end

function data.paired(damaged_dir, clean_dir, opts)
    opts = check_opts("paired", opts)
    local damaged = list("paired", damaged_dir, opts.recursive)
    local find = partner_index(list("paired", clean_dir, opts.recursive))
    local items = {}
    for _, rel in ipairs(damaged) do
        local partner = find(rel)
        if not partner then
            error(("data.paired: %s has no clean partner %s"):format(join(damaged_dir, rel),
                join(clean_dir, rel)), 2)
        end
        items[#items + 1] = { path = join(damaged_dir, rel), target_path = join(clean_dir, partner),
            rel = rel, name = basename(rel) }
    end
    return new_dataset("paired", damaged_dir, items, opts)
end

local LEVELS = { easy = "Easy", medium = "Medium", hard = "Hard" }

local function as_set(list_, what, allowed)
    if list_ == nil then return nil end
    local set = {}
    for _, v in ipairs(list_) do
        local canon = allowed[tostring(v):lower()]
        if not canon then error(("data.socofing: unknown %s '%s'"):format(what, tostring(v)), 3) end
        set[canon] = true
    end
    return set
end

function data.socofing(root, opts)
    opts = check_opts("socofing", opts)
    local levels = as_set(opts.levels, "level", LEVELS)
    local types = as_set(opts.types, "damage type", { cr = "CR", obl = "Obl", zcut = "Zcut" })
    local real, altered, ignored = {}, {}, {}
    for _, rel in ipairs(list("socofing", root, true)) do
        local first, rest = rel:match("^([^/]+)/(.+)$")
        local level
        if first and first:lower() == "altered" then
            local sub = rest:match("^([^/]+)/")
            level = sub and LEVELS[(sub:match("^[Aa]ltered%-(%a+)$") or ""):lower()]
        end
        local kind = first and first:lower() == "real" and "real" or level and "altered" or nil
        if not kind then
            ignored[#ignored + 1] = rel
        else
            local name = basename(rel)
            local m = data.parse_socofing_name(name)
            if not m then
                error(("data.socofing: %s is not named <subject>__<M|F>_<Left|Right>_<finger>_" ..
                    "finger[_CR|_Obl|_Zcut].BMP"):format(join(root, rel)), 2)
            end
            m.path, m.rel, m.name = join(root, rel), rel, name
            if kind == "real" then
                if m.damage then
                    error(("data.socofing: %s is in Real/ but has the damage suffix _%s"):format(
                        m.path, m.damage), 2)
                end
                local key = m.real_name:lower()
                if real[key] then
                    error(("data.socofing: %s and %s are the same finger"):format(real[key].path, m.path), 2)
                end
                real[key] = m
            else
                if not m.damage then
                    error(("data.socofing: %s is in Altered/ without a damage suffix"):format(m.path), 2)
                end
                m.level = level
                if (not levels or levels[level]) and (not types or types[m.damage]) then
                    altered[#altered + 1] = m
                end
            end
        end
    end
    local items = {}
    if next(real) == nil then
        error(("data.socofing: no images in %s (expected Real/ and Altered/Altered-Easy, " ..
            "-Medium, -Hard)"):format(join(root, "Real")), 2)
    end
    if #altered > 0 then
        for _, m in ipairs(altered) do
            local r = real[m.real_name:lower()]
            if not r then
                error(("data.socofing: %s has no real image %s"):format(m.path,
                    join(root, "Real/" .. m.real_name)), 2)
            end
            m.target_path = r.path
            items[#items + 1] = m
        end
        if opts.include_real then
            for _, r in pairs(real) do
                local it = {}
                for k, v in pairs(r) do it[k] = v end
                it.target_path = r.path
                items[#items + 1] = it
            end
            table.sort(items, function(a, b) return a.rel < b.rel end)
        end
    else
        for _, r in pairs(real) do items[#items + 1] = r end
        table.sort(items, function(a, b) return a.rel < b.rel end)
    end
    local ds = new_dataset("socofing", root, items, opts)
    ds.ignored = ignored
    return ds
end

function data.fvc(dir, opts)
    opts = check_opts("fvc", opts)
    local items = {}
    for _, rel in ipairs(list("fvc", dir, opts.recursive)) do
        local name = basename(rel)
        local m = data.parse_fvc_name(name)
        if not m then
            error(("data.fvc: %s is not named <finger>_<impression>.tif"):format(join(dir, rel)), 2)
        end
        local db = rel:match("^(.*)/[^/]+$") or ""
        m.path, m.rel, m.name, m.db = join(dir, rel), rel, name, db
        -- one identity per finger of each database (101 of DB1 is not 101 of DB2)
        m.finger_id = db == "" and tostring(m.finger) or db .. "/" .. m.finger
        items[#items + 1] = m
    end
    return new_dataset("fvc", dir, items, opts)
end

local function subdirs(dir)
    local out = {}
    for _, name in ipairs({ "real", "Real", "REAL", "damaged", "clean", "Damaged", "Clean" }) do
        if C.is_dir(join(dir, name)) then out[name:lower()] = name end
    end
    return out
end

function data.detect(dir, opts)
    local sub = subdirs(dir)
    if sub.real then return data.socofing(dir, opts) end
    if sub.damaged and sub.clean then
        return data.paired(join(dir, sub.damaged), join(dir, sub.clean), opts)
    end
    local files = list("detect", dir, true)
    local fvc = true
    for _, rel in ipairs(files) do
        if not data.parse_fvc_name(basename(rel)) then
            fvc = false
            break
        end
    end
    if fvc then return data.fvc(dir, opts) end
    return data.folder(dir, opts)
end

data.Dataset = dataset.Dataset
data.Loader = dataset.Loader

return data
