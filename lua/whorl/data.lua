-- whorl.data: fingerprint datasets.
--
--   data.folder(dir, opts)                 every image under dir (recursive)
--   data.paired(damaged_dir, clean_dir, opts)  same relative names in both
--   data.socofing(root, opts)              Real/ and Altered/Altered-{Easy,Medium,Hard}/
--   data.fvc(dir, opts)                    <finger>_<impression>.tif
--   data.detect(dir, opts)                 one of the above, by the names found
--
-- A dataset is a list of items (ds.items[i]: path, name and what the layout
-- parses from names; paired items also have target_path).  Pixels are
-- decoded and preprocessed in C, all at once, the first time they are
-- needed (ds:load()), into one (N,H,W) store shared by the dataset and its
-- splits, optionally cached in one file.
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
--
-- Methods: #ds, ds:item(i), ds:load(), ds:get(i) -> x[, y] (1,H,W) float32,
-- ds:split(fractions, {seed=, by=}) -> parts, ds:subset(indices),
-- ds:batches(n, opts) -> for x, y, idx in ..., ds:loader(n, opts).
local core = require "whorl.core"

local C = core._data
local data = {}

local Dataset = {}
Dataset.__index = Dataset
Dataset.__len = function(self) return #self.items end

local PREPROCESS_KEYS = { "size", "fit", "crop", "block", "threshold", "margin", "dpi",
    "target_dpi", "equalize", "tiles", "clip", "bins", "invert" }
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
local function new_dataset(layout, root, items, opts)
    local files, index = {}, {}
    local function file(path)
        if not index[path] then
            files[#files + 1] = path
            index[path] = #files
        end
        return index[path]
    end
    for _, it in ipairs(items) do
        it.input = file(it.path)
        if it.target_path then it.target = file(it.target_path) end
    end
    local shared = { files = files, opts = opts, layout = layout, root = root }
    return setmetatable({ layout = layout, root = root, items = items, shared = shared }, Dataset)
end

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

-- ---- pixels ---------------------------------------------------------------------------------

-- The preprocessing options as one canonical string (part of the cache key).
local function canonical(opts)
    local parts = {}
    for _, k in ipairs(PREPROCESS_KEYS) do
        local v = opts[k]
        if type(v) == "table" then v = table.concat(v, "x") end
        parts[#parts + 1] = k .. "=" .. tostring(v)
    end
    return table.concat(parts, ";")
end

local function preprocess_opts(opts)
    local p = {}
    for _, k in ipairs(PREPROCESS_KEYS) do p[k] = opts[k] end
    if p.size == nil then p.size = 128 end
    return p
end

local function cache_path(shared)
    local c = shared.opts.cache
    if not c then return nil end
    if type(c) == "string" then return c end
    local base = os.getenv("WHORL_CACHE")
    if not base then
        local xdg = os.getenv("XDG_CACHE_HOME")
        base = (xdg and xdg ~= "" and xdg or (os.getenv("HOME") or "/tmp") .. "/.cache") .. "/whorl"
    end
    local tag = C.files_key({}, shared.layout .. ":" .. shared.root)
    local name = shared.root:gsub("/+$", ""):match("([^/]+)$") or "data"
    return ("%s/%s-%s-%s.whds"):format(base, shared.layout, name:gsub("[^%w_.-]", "_"), tag:sub(1, 8))
end

-- Decodes and preprocesses every file (or loads them from the cache file).
-- Sets ds.cache_status: "off", "loaded", or "built (<why the cache was not used>)".
function Dataset:load()
    local sh = self.shared
    if sh.pixels then return self end
    local p = preprocess_opts(sh.opts)
    local h, w = p.size, p.size
    if type(p.size) == "table" then h, w = p.size[1], p.size[2] end
    local dtype = sh.opts.dtype or "uint8"
    -- a damaged image takes its clean partner's crop box
    local box_from = {}
    for i = 1, #sh.files do box_from[i] = 0 end
    local pairs_key = {}
    for _, it in ipairs(self:_all_items()) do
        if it.target and it.target ~= it.input then
            box_from[it.input] = it.target
            pairs_key[#pairs_key + 1] = it.input .. ">" .. it.target
        end
    end
    local path = cache_path(sh)
    local key
    if path then
        key = C.files_key(sh.files, canonical(p) .. ";dtype=" .. dtype .. ";" ..
            table.concat(pairs_key, ","))
        local pixels, meta = C.cache_load(path, key, #sh.files, h, w, dtype)
        if pixels then
            sh.pixels, sh.meta, sh.cache_status, sh.cache_path = pixels, meta, "loaded", path
            return self
        end
        sh.cache_status = "built (" .. meta .. ")"
    else
        sh.cache_status = "off"
    end
    sh.pixels, sh.meta = C.build(sh.files, box_from, p, dtype)
    if path then
        C.cache_save(path, key, sh.pixels, sh.meta)
        sh.cache_path = path
    end
    return self
end

-- Every item of the whole dataset (the splits share the files).
function Dataset:_all_items()
    return self.shared.all_items or self.items
end

function Dataset:size() return #self.items end

function Dataset:item(i)
    local it = self.items[i]
    if not it then error(("dataset: item %s out of range 1..%d"):format(tostring(i), #self.items), 2) end
    return it
end

function Dataset:cache_status() return self.shared.cache_status end

local function row(pixels, k)
    local r = pixels[k]
    if r:dtype() == "uint8" then r = r:float() / 255 else r = r:float():clone() end
    return r:view(1, r:size(1), r:size(2))
end

-- Item i's preprocessed image (1,H,W) float32 in [0,1], and its target for paired data.
function Dataset:get(i)
    local it = self:item(i)
    self:load()
    local px = self.shared.pixels
    if it.target then return row(px, it.input), row(px, it.target) end
    return row(px, it.input)
end

-- The crop box of item i's input in its (resampled) image, {top, left, bottom, right}
-- 1-based inclusive, and that image's {height, width}.
function Dataset:box(i)
    local it = self:item(i)
    self:load()
    local m = self.shared.meta[it.input]:totable()
    return { m[3] + 1, m[4] + 1, m[5], m[6] }, { m[1], m[2] }
end

function Dataset:subset(indices)
    local items = {}
    for k, i in ipairs(indices) do
        items[k] = self:item(i)
    end
    self.shared.all_items = self:_all_items()
    return setmetatable({ layout = self.layout, root = self.root, items = items,
        shared = self.shared, ignored = self.ignored }, Dataset)
end

-- ---- splits -------------------------------------------------------------------------------

local function check_fractions(fractions)
    if type(fractions) == "number" then fractions = { fractions, 1 - fractions } end
    if type(fractions) ~= "table" or #fractions < 2 then
        error("split: fractions must be a number in (0,1) or a list of two or more", 3)
    end
    local sum = 0
    for i, f in ipairs(fractions) do
        if type(f) ~= "number" or not (f > 0 and f < 1) then
            error(("split: fraction %d must be in (0,1), got %s"):format(i, tostring(f)), 3)
        end
        sum = sum + f
    end
    if math.abs(sum - 1) > 1e-9 then error(("split: the fractions sum to %g, not 1"):format(sum), 3) end
    return fractions
end

local function group_key(by)
    if by == nil or by == "image" then return nil end
    if type(by) == "function" then return by end
    if by == "finger" then
        return function(it) return it.finger_id end
    elseif by == "subject" then
        return function(it) return it.subject end
    end
    error(("split: by must be 'image', 'finger', 'subject' or a function, got %s"):format(tostring(by)), 3)
end

-- Splits the items by fractions ({0.8, 0.2}, or 0.8 for that), seeded: at
-- random over items, or over groups (by = "finger" | "subject" | function(item)
-- -> key) so that no finger or subject is in two parts.  Returns the parts
-- (datasets sharing this one's pixels); each keeps the items' original order.
-- With n items and fractions f, parts 2.. get ceil(f * n) items and part 1
-- the rest (scikit-learn's train_test_split rounding).
function Dataset:split(fractions, opts)
    fractions = check_fractions(fractions)
    opts = opts or {}
    local seed = opts.seed or 0
    local n, k = #self.items, #fractions
    local keyf = group_key(opts.by)
    local assign = {}
    if not keyf then
        local sizes, rest = {}, n
        for j = 2, k do
            sizes[j] = math.ceil(fractions[j] * n - 1e-9)
            rest = rest - sizes[j]
        end
        sizes[1] = rest
        for j = 1, k do
            if sizes[j] < 1 then
                error(("split: part %d would be empty (%d items, fractions %s)"):format(j, n,
                    table.concat(fractions, ", ")), 2)
            end
        end
        local perm = C.permutation(n, seed)
        local pos = 0
        for j = 1, k do
            for _ = 1, sizes[j] do
                pos = pos + 1
                assign[perm[pos]] = j
            end
        end
    else
        local groups, order = {}, {}
        for i, it in ipairs(self.items) do
            local key = keyf(it)
            if key == nil then
                error(("split: item %d (%s) has no %s"):format(i, it.path or "?",
                    type(opts.by) == "string" and opts.by or "group key"), 2)
            end
            if not groups[key] then
                groups[key] = {}
                order[#order + 1] = key
            end
            table.insert(groups[key], i)
        end
        if #order < k then
            error(("split: %d groups are too few for %d parts"):format(#order, k), 2)
        end
        local perm = C.permutation(#order, seed)
        -- Groups in shuffled order fill the parts up to their cumulative targets.
        local targets, acc = {}, 0
        for j = 1, k do
            acc = acc + fractions[j]
            targets[j] = acc * n
        end
        local part, done, counts = 1, 0, {}
        for j = 1, k do counts[j] = 0 end
        for g = 1, #order do
            local members = groups[order[perm[g]]]
            for _, i in ipairs(members) do assign[i] = part end
            counts[part] = counts[part] + #members
            done = done + #members
            -- the next part once this one is full, or when the groups left
            -- are just enough to give each later part one
            if part < k and (done >= targets[part] or #order - g <= k - part) then
                part = part + 1
            end
        end
        for j = 1, k do
            if counts[j] == 0 then
                error(("split: part %d is empty (%d groups)"):format(j, #order), 2)
            end
        end
    end
    local parts = {}
    for j = 1, k do parts[j] = {} end
    for i = 1, n do table.insert(parts[assign[i]], i) end
    local out = {}
    for j = 1, k do out[j] = self:subset(parts[j]) end
    return table.unpack(out)
end

-- ---- batches -------------------------------------------------------------------------------

local Loader = {}
Loader.__index = Loader

-- A loader of batches of n items: x (B,1,H,W) float32 and, for paired data,
-- y of the same shape.  opts: shuffle = true (a new permutation each epoch,
-- from seed and the epoch number), seed = 0, drop_last = false,
-- background = true (a C thread prepares the next batch meanwhile),
-- prefetch = 2.
function Dataset:loader(n, opts)
    opts = opts or {}
    if math.type(n) ~= "integer" or n < 1 then
        error("loader: batch size must be a positive integer, got " .. tostring(n), 2)
    end
    self:load()
    local input, target = {}, nil
    for i, it in ipairs(self.items) do
        input[i] = it.input
        if it.target then
            target = target or {}
            target[i] = it.target
        end
    end
    if target and #target ~= #input then error("loader: some items are paired and some not", 2) end
    local c = C.loader(self.shared.pixels, input, target, n, { drop_last = opts.drop_last,
        background = opts.background ~= false, prefetch = opts.prefetch, seed = opts.seed or 0 })
    return setmetatable({ c = c, n = #self.items, batch = n, shuffle = opts.shuffle ~= false,
        seed = opts.seed or 0 }, Loader)
end

-- The item order of an epoch: the same for the same seed and epoch.
function Loader:order(epoch)
    if not self.shuffle then
        local o = {}
        for i = 1, self.n do o[i] = i end
        return o
    end
    return C.permutation(self.n, C.seed_mix(self.seed, epoch))
end

-- Iterates over one epoch: for x, y, indices in loader:epoch(e) do ... end
-- (y is nil for unpaired data; indices are the batch's item numbers).
function Loader:epoch(epoch)
    epoch = epoch or 1
    local order = self:order(epoch)
    self.c:start(order, epoch)
    local b, B = 0, self.batch
    return function()
        local x, y = self.c:next()
        if not x then return nil end
        b = b + 1
        local idx = table.move(order, (b - 1) * B + 1, math.min(b * B, #order), 1, {})
        return x, y, idx
    end
end

function Loader:batches() return self.c:batches() end
function Loader:close() self.c:close() end
Loader.__close = Loader.close

-- One epoch of batches, closing its loader when the loop ends:
-- for x, y, idx in ds:batches(32, {seed = 1, epoch = 3}) do ... end
function Dataset:batches(n, opts)
    opts = opts or {}
    local loader = self:loader(n, opts)
    return loader:epoch(opts.epoch or 1), nil, nil, loader
end

data.Dataset = Dataset
data.Loader = Loader

return data
