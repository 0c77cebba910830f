-- Writes docs/synthetic.png: a contact sheet of whorl.synth.
--
--   lua5.4 tools/contact_sheet.lua [out.png] [tile size]
--   (LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;")
--
-- One row per class (six fingers each: impressions 0..5 of fingers of that
-- class), then one row per damage kind: the clean print, the damage at
-- easy, medium and hard, the mask of the hard one, and hard on another
-- print.  Each row is labelled on the left.  Everything is seeded, so the
-- sheet is the same on every run.
local whorl = require "whorl"
local synth = whorl.synth

local out = arg[1] or "docs/synthetic.png"
local tile = tonumber(arg[2]) or 128
local dpi = 350 * tile / 128 -- a whole finger in the tile, SOCOFing-like
local gap, cols, scale = 4, 6, 2

-- A 5x7 font for the labels (lower case, digits are not needed).
local font = {
    a = { ".....", ".....", ".###.", "....#", ".####", "#...#", ".####" },
    b = { "#....", "#....", "####.", "#...#", "#...#", "#...#", "####." },
    c = { ".....", ".....", ".####", "#....", "#....", "#....", ".####" },
    d = { "....#", "....#", ".####", "#...#", "#...#", "#...#", ".####" },
    e = { ".....", ".....", ".###.", "#...#", "#####", "#....", ".###." },
    f = { "..##.", ".#...", "####.", ".#...", ".#...", ".#...", ".#..." },
    g = { ".....", ".####", "#...#", "#...#", ".####", "....#", ".###." },
    h = { "#....", "#....", "####.", "#...#", "#...#", "#...#", "#...#" },
    i = { "..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###." },
    j = { "...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.." },
    k = { "#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#." },
    l = { ".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###." },
    m = { ".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#" },
    n = { ".....", ".....", "####.", "#...#", "#...#", "#...#", "#...#" },
    o = { ".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###." },
    p = { ".....", "####.", "#...#", "#...#", "####.", "#....", "#...." },
    q = { ".....", ".####", "#...#", "#...#", ".####", "....#", "....#" },
    r = { ".....", ".....", "#.##.", "##..#", "#....", "#....", "#...." },
    s = { ".....", ".....", ".####", "#....", ".###.", "....#", "####." },
    t = { ".#...", ".#...", "####.", ".#...", ".#...", ".#..#", "..##." },
    u = { ".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#" },
    v = { ".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.." },
    w = { ".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#." },
    x = { ".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#" },
    y = { ".....", "#...#", "#...#", "#...#", ".####", "....#", ".###." },
    z = { ".....", ".....", "#####", "...#.", "..#..", ".#...", "#####" },
    _ = { ".....", ".....", ".....", ".....", ".....", ".....", "#####" },
    [" "] = { ".....", ".....", ".....", ".....", ".....", ".....", "....." },
}

local label_width = 17 * 6 * scale
local nrows = #synth.classes + #synth.damage_kinds
local H = nrows * (tile + gap) + gap
local W = label_width + cols * (tile + gap) + gap
local sheet = whorl.full({ H, W }, 1.0)

-- Paste a (tile, tile) image (or (1, tile, tile)) at row r, column c (1-based).
local function paste(img, r, c)
    local y = gap + (r - 1) * (tile + gap) + 1
    local x = label_width + gap + (c - 1) * (tile + gap) + 1
    sheet:narrow(1, y, tile):narrow(2, x, tile):copy_(img:view(tile, tile))
end

local function label(text, r)
    local y0 = gap + (r - 1) * (tile + gap) + (tile - 7 * scale) // 2
    local pixels = {}
    for i = 1, #text do
        local glyph = font[text:sub(i, i)] or font[" "]
        for gy = 1, 7 do
            for gx = 1, 5 do
                if glyph[gy]:sub(gx, gx) == "#" then
                    for sy = 0, scale - 1 do
                        for sx = 0, scale - 1 do
                            pixels[#pixels + 1] = { y0 + (gy - 1) * scale + sy + 1,
                                                    4 + ((i - 1) * 6 + gx - 1) * scale + sx + 1 }
                        end
                    end
                end
            end
        end
    end
    for _, p in ipairs(pixels) do sheet:set(p[1], p[2], 0) end
end

local row = 0
for ci, class in ipairs(synth.classes) do
    row = row + 1
    label(class:gsub("_", " "), row)
    for c = 1, cols do
        -- two fingers of the class, three impressions each
        local img = synth.fingerprint({ size = tile, dpi = dpi, seed = 2024, class = class,
                                        finger = ci * 100 + (c - 1) // 3, impression = (c - 1) % 3 })
        paste(img, row, c)
    end
end

local base = synth.fingerprint({ size = tile, dpi = dpi, seed = 2024, finger = 7 })
local other = synth.fingerprint({ size = tile, dpi = dpi, seed = 2024, finger = 8 })
for k, kind in ipairs(synth.damage_kinds) do
    row = row + 1
    label(kind, row)
    paste(base, row, 1)
    local mask
    for l, level in ipairs(synth.levels) do
        local damaged, m = synth.damage(base, kind, { level = level, seed = k })
        paste(damaged, row, l + 1)
        mask = m
    end
    paste(1 - mask, row, 5) -- the mask drawn dark where the damage is
    paste((synth.damage(other, kind, { level = "hard", seed = k })), row, 6)
end

whorl.image.write(out, sheet)
print(("wrote %s (%dx%d)"):format(out, W, H))
