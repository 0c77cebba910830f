-- whorl.data's Dataset and Loader classes (see lua/whorl/data.lua for the
-- layouts that make datasets).  A dataset is a list of items over a shared
-- table of unique files; its pixels are decoded and preprocessed in C, all
-- at once, the first time they are needed (ds:load()), into one (N,H,W)
-- store shared by the dataset and its splits, optionally cached in one file.
local core = require "whorl.core"

local C = core._data
local M = {}

local Dataset = {}
Dataset.__index = Dataset
Dataset.__len = function(self) return #self.items end

-- The options of image.preprocess that a dataset passes on.
local PREPROCESS_KEYS = { "size", "fit", "crop", "block", "threshold", "margin", "dpi",
    "target_dpi", "equalize", "tiles", "clip", "bins", "invert" }
M.PREPROCESS_KEYS = PREPROCESS_KEYS

-- A dataset over `items`, whose pixels come from their path and
-- target_path (each unique file is decoded once).
function M.new(layout, root, items, opts)
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
-- ds:cache_status() then says "off", "loaded", or "built (<why the cache was not used>)".
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

M.Dataset = Dataset
M.Loader = Loader

return M
