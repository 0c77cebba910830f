-- The reconstruction job's data: training, validation and test prints, as
-- damaged inputs, clean targets and the masks of the damaged pixels.
--
--   local sets = require("whorl.jobs.reconstruct_data").load(o)
--   sets.train    for whorl.fit: clean prints damaged afresh every epoch
--                 (whorl.augment), or fixed pairs ({x, y[, weight]})
--   sets.valid    {x, y[, weight]}: one fixed draw, so val_loss compares across epochs
--   sets.test     {clean, damaged, mask (N,1,H,W), fingers = {finger number per print}
--                 or nil when the names give no finger, kinds = {the damage kind of
--                 each print} when the damage was made here, about = a line}
--   sets.about    a line saying what the data is
-- The weight (the visible damage: M.visible) goes with the batches only for
-- the masked model, whose loss learns the mask from it (models/masked.lua).
--
-- o.data nil: synthetic prints (whorl.synth), o.fingers fingers x
-- o.impressions for training and validation (80/20 over prints) and
-- o.test_fingers other fingers for the test, all damaged by every kind of
-- whorl.synth.damage at random levels.  o.data a folder: whorl.data.detect's
-- layout; SOCOFing Altered/ and damaged/ + clean/ folders give real damaged
-- and clean pairs (the mask: pixels that differ by more than 0.05), other
-- layouts clean prints damaged here.  Real prints are split 64/16/20 into
-- training, validation and test, by finger where the names give one.
local whorl = require "whorl"
local augment = require "whorl.augment"
local core_data = require("whorl.core")._data

local M = {}

-- Pixels of a real damaged/clean pair that differ by more than this count
-- as damaged (13 grey levels of 255: above the noise of re-encoding).
M.DIFF_THRESHOLD = 0.05

local function fail(fmt, ...) error("reconstruct: " .. string.format(fmt, ...), 0) end

-- Rows idx (a list of indices along the first dimension) of t, as one tensor.
function M.rows(t, idx)
    local parts = {}
    for i, k in ipairs(idx) do parts[i] = t:narrow(1, k, 1) end
    return whorl.cat(parts, 1)
end
local rows = M.rows

-- The damaged pixels of a pair, 1 where |damaged - clean| > DIFF_THRESHOLD.
function M.difference_mask(damaged, clean)
    return (((damaged - clean):abs() - M.DIFF_THRESHOLD) * 1e4):clamp(0, 1)
end

-- A damage that changes the pixels under its mask by less than this on
-- average is left alone by the mask head (see M.visible).
M.VISIBLE_CHANGE = 0.02

-- The damage a model can see, decided per print: the generator's mask when
-- the damage changed the pixels under it by more than VISIBLE_CHANGE on
-- average, else nothing.  A light blur covers the whole print (mask 1) but
-- changes it by 0.01 (43 dB): a mask head taught to flag it replaced good
-- pixels by worse content (-11 dB on those prints).  Deciding per pixel
-- instead (changed by more than DIFF_THRESHOLD) speckles the mask of a
-- faint print over its ridges only, and the composite of restored ridges
-- and faint valleys cost identity: genuine score 0.75 with a perfect
-- content against 0.99 for the faint print itself.
function M.visible(mask, damaged, clean)
    local n = mask:size()[1]
    local change = ((damaged - clean):abs() * mask):reshape(n, -1):sum(2)
    local area = mask:reshape(n, -1):sum(2) + 1e-6
    local keep = (((change / area) - M.VISIBLE_CHANGE) * 1e4):clamp(0, 1):reshape(n, 1, 1, 1)
    return mask * keep
end

-- augment.damaged's batches with the visible part of their masks.
local Visible = {}
Visible.__index = Visible
function Visible:size() return self.inner:size() end
function Visible:batches(batch_size, opts)
    local next_batch = self.inner:batches(batch_size, opts)
    return function()
        local x, y, mask = next_batch()
        if x == nil then return nil end
        return x, y, M.visible(mask, x, y)
    end
end

-- Training data from clean training prints, and fixed damaged copies of
-- the validation and test prints.
local function from_clean(o, train_clean, valid_clean, test_clean, with_mask)
    local sets = {}
    if o.frozen_damage then
        local x, mask = whorl.synth.damage(train_clean, "random", { level = "random", seed = o.seed + 2 })
        sets.train = { x = x, y = train_clean, weight = with_mask and M.visible(mask, x, train_clean) or nil }
    else
        sets.train = augment.damaged(train_clean, { seed = o.seed, with_mask = with_mask })
        if with_mask then sets.train = setmetatable({ inner = sets.train }, Visible) end
    end
    local vx, vmask = whorl.synth.damage(valid_clean, "random", { level = "random", seed = o.seed + 1 })
    sets.valid = { x = vx, y = valid_clean, weight = with_mask and M.visible(vmask, vx, valid_clean) or nil }
    sets.test = M.damage_test(test_clean, o.seed + 1001)
    return sets
end

-- Every test print damaged by a random kind and level, drawn again (up to
-- 8 times) for a print the draw left as it was (a cut beside the print):
-- an unchanged print has an infinite PSNR, which would make the mean one.
-- -> {clean, damaged, mask, kinds = {the kind of each print}}
function M.damage_test(clean, seed)
    local n = clean:size()[1]
    local damaged, mask, choices = {}, {}, {}
    local todo = {}
    for i = 1, n do todo[i] = i end
    for attempt = 0, 8 do
        local part = rows(clean, todo)
        local x, m, c = whorl.synth.damage(part, "random", { level = "random", seed = seed + 7919 * attempt })
        local changed = (x - part):abs():reshape(#todo, -1):max(2):totable()
        local again = {}
        for k, i in ipairs(todo) do
            if changed[k] > 0 or attempt == 8 then
                damaged[i], mask[i], choices[i] = x:narrow(1, k, 1), m:narrow(1, k, 1), c[k].kind
            else
                again[#again + 1] = i
            end
        end
        todo = again
        if #todo == 0 then break end
    end
    return { clean = clean, damaged = whorl.cat(damaged, 1), mask = whorl.cat(mask, 1), kinds = choices }
end

local function synthetic(o, with_mask)
    local function prints(seed, fingers)
        return whorl.synth.batch{ count = fingers * o.impressions, impressions = o.impressions,
            size = o.size, dpi = o.dpi, seed = seed, info = false }
    end
    local clean = prints(o.seed, o.fingers)
    local n = clean:size()[1]
    local perm = core_data.permutation(n, o.seed)
    local cut = math.floor(n * 0.8 + 0.5)
    local test_clean = prints(o.seed + 1000, o.test_fingers)
    local sets = from_clean(o, rows(clean, table.move(perm, 1, cut, 1, {})),
        rows(clean, table.move(perm, cut + 1, n, 1, {})), test_clean, with_mask)
    sets.test.fingers = {}
    for i = 1, test_clean:size()[1] do sets.test.fingers[i] = (i - 1) // o.impressions + 1 end
    sets.about = ("%d synthetic prints (%d fingers x %d impressions, %d dpi), %d for training and %d " ..
        "for validation"):format(n, o.fingers, o.impressions, o.dpi, cut, n - cut)
    sets.test.about = ("%d prints of %d other fingers"):format(test_clean:size()[1], o.test_fingers)
    return sets
end

-- All of a dataset's images at once: x (N,1,H,W) and, for pairs, y.
local function tensors(ds)
    local loader = ds:loader(#ds, { shuffle = false, background = false })
    local x, y = loader:epoch(1)()
    loader:close()
    return x, y
end

-- Finger numbers 1, 2, ... from the items' finger ids, or nil without them.
local function finger_numbers(ds)
    local ids, out, count = {}, {}, 0
    for i, it in ipairs(ds.items) do
        if it.finger_id == nil then return nil end
        if not ids[it.finger_id] then
            count = count + 1
            ids[it.finger_id] = count
        end
        out[i] = ids[it.finger_id]
    end
    return out
end

local function real(o, with_mask)
    if not core_data.is_dir(o.data) then fail("--data: no folder %s", o.data) end
    local ds = whorl.data.detect(o.data, { size = o.size })
    local by = ds.items[1] and ds.items[1].finger_id and "finger" or "image"
    if #ds < 3 then fail("--data: %s has %d image(s); the split needs at least 3", o.data, #ds) end
    local train, valid, test = ds:split({ 0.64, 0.16, 0.2 }, { seed = o.seed, by = by })
    local paired = ds.items[1].target ~= nil
    local sets
    if paired then
        local function pairs_of(part)
            local x, y = tensors(part)
            return x, y, M.difference_mask(x, y)
        end
        local tx, ty, tm = pairs_of(train)
        local vx, vy, vm = pairs_of(valid)
        local sx, sy, sm = pairs_of(test)
        sets = { train = { x = tx, y = ty, weight = with_mask and tm or nil },
            valid = { x = vx, y = vy, weight = with_mask and vm or nil },
            test = { clean = sy, damaged = sx, mask = sm } }
    else
        sets = from_clean(o, tensors(train), tensors(valid), tensors(test), with_mask)
    end
    sets.test.fingers = finger_numbers(test)
    sets.about = ("%d %s images from %s (%s), split by %s: %d training, %d validation"):format(
        #ds, ds.layout, o.data, paired and "damaged and clean pairs" or "clean, damaged here", by,
        #train, #valid)
    sets.test.about = ("%d %s images of other %ss"):format(#test, ds.layout, by)
    return sets
end

function M.load(o)
    local with_mask = o.model == "masked"
    if o.data then return real(o, with_mask) end
    return synthetic(o, with_mask)
end

return M
