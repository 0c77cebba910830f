-- whorl.fingerprint: is a restored print still the same finger?
--
-- The C table (extraction from lua/bind_fingerprint.c, matching and score
-- statistics from lua/bind_fingerprint_match.c) extended with:
--
--   fp.template_from_synth(info [, {height=, width=}]) -> template
--       whorl.synth's ground-truth minutiae (1-based) as a template (0-based,
--       the frame of fp.extract).
--   fp.evaluate{clean=, damaged=, restored=, fingers=, dpi=500,
--               fmr={0.01, 0.001}, impostor_fingers=100, same_finger=false,
--               templates=nil, pair_distance=15, pair_angle=math.rad(25)}
--       -> {n=, genuine = {damaged = {mean=, count=}, restored = {...}},
--           impostor = {count=, mean=, damaged = {mean=}},
--           thresholds = {["0.01"] = t, ["0.001"] = t},
--           gmr = {damaged = {["0.01"] = r, ...}, restored = {...}},
--           eer = {damaged =, restored =},
--           minutiae = {damaged = {precision=, recall=}, restored = {...}},
--           clean = {minutiae=, matchable=}, seconds =}
--       clean, damaged, restored: N x H x W or N x 1 x H x W image tensors
--       (damaged or restored may be left out; that side is then absent),
--       aligned so that image i of each shows the same impression.
--       fingers: the finger id of each image (default: all different).
--       Genuine comparisons: damaged[i] and restored[i] against clean[i]
--       (with same_finger=true also against clean[j] of the finger's other
--       impressions).  Impostor comparisons: the first image of each of up
--       to impostor_fingers fingers, restored (and damaged) against the clean
--       image of every other finger of that subset: F (F - 1) comparisons.
--       Thresholds are set on the restored impostor scores (the system
--       under test) and GMR of both sides is read at them; the damaged EER
--       uses the damaged impostor scores.  Minutiae precision and recall:
--       extracted minutiae of damaged/restored paired one-to-one with those
--       of clean within pair_distance pixels (scaled by dpi/500) and
--       pair_angle radians (fp.pair), summed over all images.
--       scores = true adds genuine.{damaged,restored}.scores, the score of
--       each genuine comparison in order (image i's first; with
--       same_finger=false exactly one per image).
--       templates = {clean=, damaged=, restored=}: lists of templates (as
--       fp.extract returns) to use instead of extracting from the images.
--       clean.minutiae is the mean number of minutiae of a clean print and
--       clean.matchable the fraction of clean prints with at least one
--       usable cylinder: prints much smaller than a cylinder (140 px across
--       at 500 dpi), such as 64 x 64 at 500 dpi with 3 minutiae, cannot be
--       told apart by minutiae and score near 0 whatever the restoration.
--   fp.draw_minutiae{path, image, template, title=nil, scale=auto}
--       A PNG of the print with its minutiae: endings red, bifurcations
--       blue, each a circle with a tick along its direction.  image (H, W)
--       or (1, H, W) in [0, 1]; scale: canvas pixels per image pixel
--       (default: the print about 512 pixels a side).
--   fp.draw_pairs{path, image_a, image_b, template_a, template_b, pairs=nil,
--                 title=nil, scale=auto, dpi=500}
--       The two prints side by side, every minutia in grey and the paired
--       ones in colour, joined by a line.  pairs: what fp.match returns
--       ({{a=, b=}, ...}) or fp.pair's ({{i, j}, ...}); by default
--       fp.match(template_a, template_b) is run and its score is the title.
--   Both draw through whorl.plot's canvas and write atomically.
local whorl = require "whorl"

local fp = whorl.fingerprint
if not fp then
    error("whorl.fingerprint: the C module has no fingerprint table (built without lua/bind_fingerprint*.c?)", 2)
end

function fp.template_from_synth(info, opts)
    opts = opts or {}
    local minutiae = {}
    for k, m in ipairs(info.minutiae) do
        minutiae[k] = {x = m.x - 1, y = m.y - 1, angle = m.angle, type = m.type, quality = 1}
    end
    return {minutiae = minutiae, height = opts.height, width = opts.width}
end

-- ---- fp.evaluate ---------------------------------------------------------------

local EVALUATE_OPTIONS = {
    clean = true, damaged = true, restored = true, fingers = true, dpi = true, fmr = true,
    impostor_fingers = true, same_finger = true, templates = true, pair_distance = true,
    pair_angle = true, scores = true,
}

-- An N x H x W view of N x H x W or N x 1 x H x W images; errors name the argument.
local function as_stack(t, name)
    if not whorl.is_tensor(t) then
        error(("fingerprint.evaluate: '%s' must be an image tensor, got %s"):format(name, type(t)), 3)
    end
    local s = t:size()
    if #s == 4 and s[2] == 1 then return t:reshape(s[1], s[3], s[4]) end
    if #s == 3 then return t end
    error(("fingerprint.evaluate: '%s' must be N x H x W or N x 1 x H x W, got %s"):format(
        name, table.concat(s, "x")), 3)
end

local function mean(xs)
    local sum = 0
    for _, x in ipairs(xs) do sum = sum + x end
    return #xs > 0 and sum / #xs or 0
end

-- Templates of each side, extracted or given; n images each.
local function side_templates(opts, sides, n)
    local given = opts.templates or {}
    local out = {}
    for _, side in ipairs(sides) do
        if given[side] then
            if #given[side] ~= n then
                error(("fingerprint.evaluate: templates.%s has %d templates for %d images"):format(
                    side, #given[side], n), 3)
            end
            out[side] = given[side]
        else
            if not fp.extract_batch then
                error("fingerprint.evaluate: fp.extract_batch is not available; pass templates = {...}", 3)
            end
            out[side] = fp.extract_batch(as_stack(opts[side], side), {dpi = opts.dpi})
        end
    end
    return out
end

-- The first image of each of up to max_fingers distinct fingers.
local function impostor_subset(fingers, max_fingers)
    local seen, firsts = {}, {}
    for i, f in ipairs(fingers) do
        if not seen[f] and #firsts < max_fingers then
            seen[f] = true
            firsts[#firsts + 1] = i
        end
    end
    return firsts
end

-- Micro-averaged minutiae precision and recall of probes against references.
local function minutiae_rates(probes, references, distance, angle)
    if not fp.pair then return nil end
    local paired, found, truth = 0, 0, 0
    for i = 1, #probes do
        local r = fp.pair(probes[i].minutiae, references[i].minutiae, {distance = distance, angle = angle})
        paired = paired + #r.pairs
        found = found + #probes[i].minutiae
        truth = truth + #references[i].minutiae
    end
    return {precision = found > 0 and paired / found or 0, recall = truth > 0 and paired / truth or 0}
end

local function fmr_key(f) return ("%g"):format(f) end

local function check_evaluate_options(opts)
    if type(opts) ~= "table" then
        error("fingerprint.evaluate: expected an options table, got " .. type(opts), 3)
    end
    for k in pairs(opts) do
        if not EVALUATE_OPTIONS[k] then
            error(("fingerprint.evaluate: unknown option '%s'"):format(tostring(k)), 3)
        end
    end
    if not opts.clean then error("fingerprint.evaluate: option 'clean' is required", 3) end
    if not opts.damaged and not opts.restored then
        error("fingerprint.evaluate: give 'damaged', 'restored' or both", 3)
    end
    local n = as_stack(opts.clean, "clean"):size(1)
    for _, side in ipairs{"damaged", "restored"} do
        if opts[side] and as_stack(opts[side], side):size(1) ~= n then
            error(("fingerprint.evaluate: '%s' has %d images, 'clean' %d"):format(
                side, as_stack(opts[side], side):size(1), n), 3)
        end
    end
    local fingers = opts.fingers
    if fingers == nil then
        fingers = {}
        for i = 1, n do fingers[i] = i end
    elseif type(fingers) ~= "table" or #fingers ~= n then
        error(("fingerprint.evaluate: 'fingers' must list one finger id per image (%d)"):format(n), 3)
    end
    local fmrs = opts.fmr or {0.01, 0.001}
    for _, f in ipairs(fmrs) do
        if type(f) ~= "number" or not (f > 0 and f < 1) then
            error("fingerprint.evaluate: each 'fmr' must be a number in (0, 1), got " .. tostring(f), 3)
        end
    end
    local dpi = opts.dpi or 500
    local max_fingers = opts.impostor_fingers or 100
    if math.type(max_fingers) ~= "integer" or max_fingers < 2 then
        error("fingerprint.evaluate: 'impostor_fingers' must be an integer >= 2", 3)
    end
    return n, fingers, fmrs, dpi, max_fingers
end

function fp.evaluate(opts)
    local start = whorl.clock()
    local n, fingers, fmrs, dpi, max_fingers = check_evaluate_options(opts)
    local sides = {}
    for _, side in ipairs{"damaged", "restored"} do
        if opts[side] then sides[#sides + 1] = side end
    end
    local all_sides = {"clean", table.unpack(sides)}
    local templates = side_templates(opts, all_sides, n)
    -- cylinders once per print, reused by every comparison
    local cylinders = {}
    for _, side in ipairs(all_sides) do cylinders[side] = fp.mcc_all(templates[side], {dpi = dpi}) end

    local genuine_pairs = {}
    for i = 1, n do
        genuine_pairs[#genuine_pairs + 1] = {i, i}
        if opts.same_finger then
            for j = 1, n do
                if j ~= i and fingers[j] == fingers[i] then genuine_pairs[#genuine_pairs + 1] = {i, j} end
            end
        end
    end
    local subset = impostor_subset(fingers, max_fingers)
    local impostor_pairs = {}
    for _, i in ipairs(subset) do
        for _, j in ipairs(subset) do
            if i ~= j then impostor_pairs[#impostor_pairs + 1] = {i, j} end
        end
    end
    if #impostor_pairs == 0 then
        error("fingerprint.evaluate: impostor comparisons need at least two different fingers", 2)
    end

    local result = {n = n, genuine = {}, impostor = {count = #impostor_pairs}, thresholds = {}, gmr = {},
                    eer = {}, minutiae = {}}
    local genuine, impostor = {}, {}
    for _, side in ipairs(sides) do
        genuine[side] = fp.match_all(cylinders[side], cylinders.clean,
                                     {dpi = dpi, pairs = genuine_pairs}):totable()
        impostor[side] = fp.match_all(cylinders[side], cylinders.clean,
                                      {dpi = dpi, pairs = impostor_pairs}):totable()
        result.genuine[side] = {mean = mean(genuine[side]), count = #genuine[side],
                                scores = opts.scores and genuine[side] or nil}
        result.eer[side] = (fp.eer(genuine[side], impostor[side]))
        result.minutiae[side] = minutiae_rates(templates[side], templates.clean,
                                               (opts.pair_distance or 15) * dpi / 500,
                                               opts.pair_angle or math.rad(25))
    end
    -- the operating points come from the system under test: restored if given
    local reference = impostor.restored or impostor.damaged
    result.impostor.mean = mean(reference)
    if impostor.damaged and impostor.restored then result.impostor.damaged = {mean = mean(impostor.damaged)} end
    for _, f in ipairs(fmrs) do
        result.thresholds[fmr_key(f)] = fp.threshold_at_fmr(reference, f)
    end
    for _, side in ipairs(sides) do
        result.gmr[side] = {}
        for _, f in ipairs(fmrs) do
            result.gmr[side][fmr_key(f)] = fp.gmr(genuine[side], result.thresholds[fmr_key(f)])
        end
    end
    local minutiae, matchable = 0, 0
    for i = 1, n do
        minutiae = minutiae + #templates.clean[i].minutiae
        matchable = matchable + (#cylinders.clean[i] > 0 and 1 or 0)
    end
    result.clean = {minutiae = minutiae / n, matchable = matchable / n}
    -- the cylinders' memory is invisible to the collector: free it now
    for _, side in ipairs(all_sides) do
        for _, c in ipairs(cylinders[side]) do c:close() end
    end
    result.seconds = whorl.clock() - start
    return result
end

-- ---- figures -----------------------------------------------------------------------

local ENDING, BIFURCATION, FAINT = {0.85, 0.1, 0.1}, {0.1, 0.3, 0.9}, {0.55, 0.55, 0.55}
local PAIR_COLOURS = {
    {0.89, 0.10, 0.11}, {0.22, 0.49, 0.72}, {0.30, 0.69, 0.29}, {0.60, 0.31, 0.64},
    {1.00, 0.50, 0.00}, {0.65, 0.34, 0.16}, {0.97, 0.51, 0.75}, {0.10, 0.70, 0.70},
}

local function figure_image(who, t, name)
    if not whorl.is_tensor(t) then error(("%s: '%s' must be an image tensor, got %s"):format(who, name, type(t)), 3) end
    local s = t:size()
    if #s == 3 and s[1] == 1 then return t:reshape(s[2], s[3]), s[2], s[3] end
    if #s == 2 then return t, s[1], s[2] end
    error(("%s: '%s' must be (H, W) or (1, H, W), got %s"):format(who, name, table.concat(s, "x")), 3)
end

local function figure_options(who, opts, allowed)
    if type(opts) ~= "table" then error(who .. ": expected an options table, got " .. type(opts), 3) end
    for k in pairs(opts) do
        if not allowed[k] then error(("%s: unknown option '%s'"):format(who, tostring(k)), 3) end
    end
    if type(opts.path) ~= "string" then error(who .. ": option 'path' (a PNG file name) is required", 3) end
end

local function figure_template(who, t, name)
    if type(t) ~= "table" or type(t.minutiae) ~= "table" then
        error(("%s: '%s' must be a template with a minutiae list"):format(who, name), 3)
    end
    return t
end

local function auto_scale(scale, h, w)
    return scale or math.max(1, 512 // math.max(h, w))
end

-- One minutia at canvas offset (ox, oy): a circle and a tick along its direction.
local function draw_minutia(c, m, ox, oy, scale, colour, width)
    local x, y = ox + (m.x + 0.5) * scale, oy + (m.y + 0.5) * scale
    local r = 2.5 * scale
    c:color(colour[1], colour[2], colour[3])
    c:circle(x, y, r, false, width)
    c:line(x, y, x + 3 * r * math.cos(m.angle), y + 3 * r * math.sin(m.angle), width)
end

local TITLE_H = 28

-- The title centred in a band on top, its font shrunk to fit the width.
local function draw_title(c, width, title)
    if not title then return 0 end
    title = tostring(title)
    local size = 14
    local w = c:measure(title, {size = size, bold = true})
    if w > width - 12 then size = math.max(6, size * (width - 12) / w) end
    c:color(0.1, 0.1, 0.1)
    c:text(width / 2, TITLE_H / 2, title, {size = size, align = "center", valign = "middle", bold = true})
    return TITLE_H
end

function fp.draw_minutiae(opts)
    local who = "fingerprint.draw_minutiae"
    figure_options(who, opts, {path = true, image = true, template = true, title = true, scale = true})
    local image, h, w = figure_image(who, opts.image, "image")
    local t = figure_template(who, opts.template, "template")
    local scale = auto_scale(opts.scale, h, w)
    local plot = require "whorl.plot"
    local legend_h = 22
    local c = plot.canvas(w * scale, h * scale + (opts.title and TITLE_H or 0) + legend_h)
    local top = draw_title(c, w * scale, opts.title)
    c:image(image, 0, top, w * scale, h * scale)
    local endings = 0
    for _, m in ipairs(t.minutiae) do
        local ending = m.type ~= "bifurcation"
        endings = endings + (ending and 1 or 0)
        draw_minutia(c, m, 0, top, scale, ending and ENDING or BIFURCATION, math.max(1.5, scale * 0.6))
    end
    c:color(0.1, 0.1, 0.1)
    c:text(6, top + h * scale + legend_h / 2, ("%d minutiae: %d endings (red), %d bifurcations (blue)"):format(
        #t.minutiae, endings, #t.minutiae - endings), {size = 12, valign = "middle"})
    c:save(opts.path)
    c:close()
end

-- pairs as {{i, j}, ...} (1-based indices) from fp.match's or fp.pair's form.
local function pair_indices(who, pairs)
    local out = {}
    for k, p in ipairs(pairs) do
        local i, j = p.a or p[1], p.b or p[2]
        if math.type(i) ~= "integer" or math.type(j) ~= "integer" then
            error(("%s: pair %d must be {a=, b=} or {i, j} with integer indices"):format(who, k), 3)
        end
        out[k] = {i, j}
    end
    return out
end

function fp.draw_pairs(opts)
    local who = "fingerprint.draw_pairs"
    figure_options(who, opts, {path = true, image_a = true, image_b = true, template_a = true,
                               template_b = true, pairs = true, title = true, scale = true, dpi = true})
    local image_a, ha, wa = figure_image(who, opts.image_a, "image_a")
    local image_b, hb, wb = figure_image(who, opts.image_b, "image_b")
    local ta = figure_template(who, opts.template_a, "template_a")
    local tb = figure_template(who, opts.template_b, "template_b")
    local title, pairs = opts.title, opts.pairs
    if not pairs then
        local score
        score, pairs = fp.match(ta, tb, {dpi = opts.dpi})
        title = title or ("score %.3f, %d pairs"):format(score, #pairs)
    end
    pairs = pair_indices(who, pairs)
    for k, p in ipairs(pairs) do
        if not ta.minutiae[p[1]] or not tb.minutiae[p[2]] then
            error(("%s: pair %d (%d, %d) is outside the templates (%d and %d minutiae)"):format(
                who, k, p[1], p[2], #ta.minutiae, #tb.minutiae), 2)
        end
    end
    local scale = auto_scale(opts.scale, math.max(ha, hb), math.max(wa, wb))
    local gap = 16
    local plot = require "whorl.plot"
    local width, height = (wa + wb) * scale + gap, math.max(ha, hb) * scale
    local c = plot.canvas(width, height + (title and TITLE_H or 0))
    local top = draw_title(c, width, title)
    local bx = wa * scale + gap
    c:image(image_a, 0, top, wa * scale, ha * scale)
    c:image(image_b, bx, top, wb * scale, hb * scale)
    for _, m in ipairs(ta.minutiae) do draw_minutia(c, m, 0, top, scale, FAINT, 1) end
    for _, m in ipairs(tb.minutiae) do draw_minutia(c, m, bx, top, scale, FAINT, 1) end
    for k, p in ipairs(pairs) do
        local colour = PAIR_COLOURS[(k - 1) % #PAIR_COLOURS + 1]
        local ma, mb = ta.minutiae[p[1]], tb.minutiae[p[2]]
        draw_minutia(c, ma, 0, top, scale, colour, 2)
        draw_minutia(c, mb, bx, top, scale, colour, 2)
        c:color(colour[1], colour[2], colour[3], 0.7)
        c:line((ma.x + 0.5) * scale, top + (ma.y + 0.5) * scale, bx + (mb.x + 0.5) * scale,
               top + (mb.y + 0.5) * scale, 1.5)
    end
    c:save(opts.path)
    c:close()
end

return fp
