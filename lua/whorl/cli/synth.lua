-- `whorl synth`: write a synthetic fingerprint set to a folder, as PNG or
-- TIFF images plus index.csv, so that any tool can use it.
--
--   whorl synth --count 200 --size 224 --out synth/ [--impressions 4]
--               [--damage random|KIND[,KIND...]] [--level random|easy|...]
--               [--seed 7] [--dpi 500] [--format png|tif]
--
-- index.csv columns: file, finger, impression, class, damage, level,
-- clean_file, mask_file (the damage columns are empty without --damage).
-- With --damage each print is written three times: the damaged image
-- (file), its clean original (clean_file) and the mask of the pixels the
-- damage changed (mask_file).
local argparse = require "argparse"
local whorl = require "whorl"

local M = {}

local function list_of(s)
    local out = {}
    for item in s:gmatch("[^,]+") do out[#out + 1] = item end
    return #out == 1 and out[1] or out
end

local function mkdir(path)
    local ok = os.execute("mkdir -p '" .. path:gsub("'", "'\\''") .. "'")
    if not ok then error("whorl synth: cannot create folder " .. path, 0) end
end

-- Quotes a CSV field when it needs it (RFC 4180).
local function csv(v)
    v = v == nil and "" or tostring(v)
    if v:find('[",\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
    return v
end

function M.run(argv)
    local parser = argparse("whorl synth", "Write synthetic fingerprints (and damaged copies) to a folder.")
    parser:option("--count", "Number of prints.", "100", tonumber)
    parser:option("--size", "Side in pixels, or HxW (e.g. 103x96).", "224")
    parser:option("--impressions", "Impressions per finger.", "1", tonumber)
    parser:option("--dpi", "Resolution; ridge periods scale with it.", "500", tonumber)
    parser:option("--damage", "Damage kinds, comma-separated, or 'random'; none by default.")
    parser:option("--level", "Damage level: easy, medium, hard or random.", "random")
    parser:option("--seed", "Seed: the same seed writes the same images.", "0", tonumber)
    parser:option("--format", "png or tif.", "png"):choices({"png", "tif"})
    parser:option("--out", "Output folder."):args(1)
    local a = parser:parse(argv)
    if not a.count or a.count < 1 then error("whorl synth: --count must be a positive number", 0) end
    if not a.impressions or a.impressions < 1 then error("whorl synth: --impressions must be >= 1", 0) end
    local h, w = a.size:match("^(%d+)x(%d+)$")
    local size = h and {tonumber(h), tonumber(w)} or tonumber(a.size)
    if not size then error("whorl synth: --size must be a number or HxW, got '" .. a.size .. "'", 0) end

    mkdir(a.out)
    local images, infos = whorl.synth.batch{count = a.count, impressions = a.impressions, size = size,
        dpi = a.dpi, seed = a.seed}
    local damaged, mask, choices
    if a.damage then
        damaged, mask, choices = whorl.synth.damage(images, list_of(a.damage),
            {level = list_of(a.level), seed = a.seed})
    end
    local index = assert(io.open(a.out .. "/index.csv", "w"))
    index:write("file,finger,impression,class,damage,level,clean_file,mask_file\n")
    for i = 1, a.count do
        local info, stem = infos[i], string.format("%06d", i)
        local file, clean_file, mask_file = stem .. "." .. a.format, "", ""
        if damaged then
            clean_file, mask_file = stem .. "_clean." .. a.format, stem .. "_mask." .. a.format
            whorl.image.write(a.out .. "/" .. file, damaged[i][1])
            whorl.image.write(a.out .. "/" .. clean_file, images[i][1])
            whorl.image.write(a.out .. "/" .. mask_file, mask[i][1])
        else
            whorl.image.write(a.out .. "/" .. file, images[i][1])
        end
        local c = choices and choices[i] or {}
        index:write(table.concat({csv(file), csv(info.finger), csv(info.impression), csv(info.class),
            csv(c.kind), csv(c.level), csv(clean_file), csv(mask_file)}, ","), "\n")
    end
    index:close()
    print(string.format("whorl synth: wrote %d prints%s to %s (index.csv)", a.count,
        damaged and " with damaged copies and masks" or "", a.out))
end

return M
