-- model:summary(opts): Keras 3's summary table.
--
--   opts.input_shape   sizes without the batch, e.g. {1, 224, 224}; not
--                      needed when the model starts with nn.Input
--   opts.input         or a tensor to run instead of zeros
--   opts.channels_last print 4-d shapes in Keras' (None, H, W, C) order;
--                      by default whorl's own (None, C, H, W)
--   opts.line_length   76 (Keras' width on an 80-column terminal)
--   opts.print         false: only return the text; opts.print_fn: where to
--                      print it (default print)
-- Returns the text.
--
-- Output shapes come from running a batch of one (zeros) through the model
-- in eval mode under no_grad, so running statistics, dropout and the
-- random generator are left as they were.  Rows are the direct children
-- (model:layers()) in the order they were called; a child never called
-- shows "?".  Param # counts parameters and buffers (Keras counts a batch
-- norm's moving statistics too); buffers and frozen parameters are the
-- non-trainable ones.  The layout follows Keras, which draws the table with
-- the rich library: columns at 45% and 80% of the line, shrunk evenly to
-- fit, cells word-wrapped.
local whorl = require "whorl"
local base = require "whorl.nn.module"

local M = {}

local DTYPE_BYTES = { float32 = 4, float64 = 8, uint8 = 1 }

-- Python's round(): halves go to the even neighbour.
local function py_round(x)
    local f = math.floor(x)
    local d = x - f
    if d > 0.5 then return f + 1 end
    if d < 0.5 then return f end
    return f % 2 == 0 and f or f + 1
end

-- rich's ratio_reduce and ratio_distribute, which size the columns.
local function ratio_reduce(total, ratios, maximums, values)
    local total_ratio, remaining, out = 0, total, {}
    for i, r in ipairs(ratios) do if maximums[i] == 0 then ratios[i] = 0 else total_ratio = total_ratio + r end end
    for i, r in ipairs(ratios) do
        if r > 0 and total_ratio > 0 then
            local d = math.min(maximums[i], py_round(r * remaining / total_ratio))
            out[i] = values[i] - d
            remaining = remaining - d
            total_ratio = total_ratio - r
        else
            out[i] = values[i]
        end
    end
    return out
end

local function ratio_distribute(total, ratios)
    local total_ratio, remaining, out = 0, total, {}
    for _, r in ipairs(ratios) do total_ratio = total_ratio + r end
    for i, r in ipairs(ratios) do
        local d = total_ratio > 0 and math.ceil(r * remaining / total_ratio) or remaining
        out[i] = d
        total_ratio = total_ratio - r
        remaining = remaining - d
    end
    return out
end

-- Column widths including one space of padding on each side.
local function column_widths(line_length, positions)
    local widths, current = {}, 0
    for i, pos in ipairs(positions) do
        local w = math.floor(pos * line_length) - current
        if w < 4 then error("summary: line_length is too small", 0) end
        widths[i] = w + 2
        current = current + w
    end
    local avail, total = line_length - (#widths + 1), 0
    for _, w in ipairs(widths) do total = total + w end
    if total > avail then
        local ones = {}
        for i = 1, #widths do ones[i] = 1 end
        widths = ratio_reduce(total - avail, ones, widths, widths)
    elseif total < avail then
        local pads = ratio_distribute(avail - total, widths)
        for i = 1, #widths do widths[i] = widths[i] + pads[i] end
    end
    return widths
end

local function text_width(s) return utf8.len(s) or #s end

-- Greedy word wrap to `width` columns; words longer than a line are cut.
local function wrap(text, width)
    local lines, line = {}, ""
    for word in text:gmatch("%S+") do
        while text_width(word) > width do
            if line ~= "" then lines[#lines + 1] = line; line = "" end
            lines[#lines + 1] = word:sub(1, width)
            word = word:sub(width + 1)
        end
        if line == "" then
            line = word
        elseif text_width(line) + 1 + text_width(word) <= width then
            line = line .. " " .. word
        else
            lines[#lines + 1] = line
            line = word
        end
    end
    if line ~= "" or #lines == 0 then lines[#lines + 1] = line end
    return lines
end

local function justify(s, width, align)
    local pad = string.rep(" ", width - text_width(s))
    return align == "right" and pad .. s or s .. pad
end

local function render_row(cells, widths, aligns, bar)
    local wrapped, height = {}, 1
    for i, c in ipairs(cells) do
        wrapped[i] = wrap(c, widths[i] - 2)
        height = math.max(height, #wrapped[i])
    end
    local out = {}
    for l = 1, height do
        local parts = {}
        for i = 1, #cells do
            parts[i] = " " .. justify(wrapped[i][l] or "", widths[i] - 2, aligns[i]) .. " "
        end
        out[l] = bar .. table.concat(parts, bar) .. bar
    end
    return table.concat(out, "\n")
end

local function rule(widths, left, fill, mid, right)
    local parts = {}
    for i, w in ipairs(widths) do parts[i] = string.rep(fill, w) end
    return left .. table.concat(parts, mid) .. right
end

local function commas(n)
    local s = tostring(math.tointeger(n) or n)
    local sign, digits = s:match("^(-?)(%d+)$")
    if not digits then return s end
    digits = digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
    return sign .. digits
end
M.commas = commas

-- Keras' readable_memory_size.
local function readable_size(bytes)
    for _, unit in ipairs({ "B", "KB", "MB", "GB", "TB" }) do
        if bytes / 1024 < 1 then return string.format("%.2f %s", bytes, unit) end
        bytes = bytes / 1024
    end
    return string.format("%.2f PB", bytes)
end
M.readable_size = readable_size

local function shape_text(out, channels_last)
    if whorl.is_tensor(out) then
        local s = out:size()
        local dims = { "None" }
        if channels_last and #s == 4 then s = { s[1], s[3], s[4], s[2] } end
        for d = 2, #s do dims[#dims + 1] = tostring(s[d]) end
        return "(" .. table.concat(dims, ", ") .. ")"
    end
    if type(out) == "table" then
        local parts = {}
        for i, v in ipairs(out) do parts[i] = shape_text(v, channels_last) end
        return "[" .. table.concat(parts, ", ") .. "]"
    end
    return "?"
end

local function tensor_counts(module)
    local trainable, frozen, buffers = {}, {}, {}
    for _, e in ipairs(module:named_state()) do
        local t, kind = e[2], e[3]
        if kind == "buffer" then buffers[#buffers + 1] = t
        elseif t.requires_grad then trainable[#trainable + 1] = t
        else frozen[#frozen + 1] = t end
    end
    local function total(list)
        local n, bytes, seen = 0, 0, {}
        for _, t in ipairs(list) do
            if not seen[t] then
                seen[t] = true
                n = n + t:numel()
                bytes = bytes + t:numel() * (DTYPE_BYTES[t:dtype()] or 4)
            end
        end
        return n, bytes
    end
    local tn, tb = total(trainable)
    local fn, fb = total(frozen)
    local bn, bb = total(buffers)
    return tn, tb, fn + bn, fb + bb
end

local function dummy_input(model, layers, opts)
    if opts.input ~= nil then
        if not whorl.is_tensor(opts.input) then error("summary: input must be a tensor", 0) end
        return opts.input
    end
    local shape = opts.input_shape
    if shape == nil then
        local first = layers[1]
        if first and first._type == "Input" then
            shape = {}
            for i, v in ipairs(first.shape) do
                if v == -1 then
                    error("summary: the Input layer has a free size; give input_shape", 0)
                end
                shape[i] = v
            end
        end
    end
    if type(shape) ~= "table" or #shape == 0 then
        error("summary: give input_shape = {C, H, W} (without the batch), or start the model " ..
            "with nn.Input{shape = ...}", 0)
    end
    local dtype = "float32"
    local params = model:parameters()
    if params[1] then dtype = params[1]:dtype() end
    return whorl.zeros({ 1, table.unpack(shape) }, dtype)
end

-- Runs the dummy input through the model and returns {{layer, shape text}}.
local function trace(model, layers, x, channels_last)
    local seen, order, handles = {}, {}, {}
    for _, layer in ipairs(layers) do
        handles[#handles + 1] = layer:register_forward_hook(function(m, out)
            if not seen[m] then order[#order + 1] = m end
            seen[m] = shape_text(out, channels_last)
        end)
    end
    local modes = {}
    for _, m in ipairs(model:modules()) do modes[m] = m.training end
    local rng = whorl.get_rng_state()
    model:eval()
    local ok, err = pcall(whorl.no_grad, function() return model(x) end)
    for m, mode in pairs(modes) do rawset(m, "training", mode) end
    whorl.set_rng_state(rng)
    for _, h in ipairs(handles) do h.remove() end
    if not ok then
        error(string.format("summary: running an input of shape %s failed: %s",
            base.shape_str(x), tostring(err)), 0)
    end
    local rows = {}
    for _, m in ipairs(order) do rows[#rows + 1] = { m, seen[m] } end
    for _, m in ipairs(layers) do
        if not seen[m] then rows[#rows + 1] = { m, "?" } end
    end
    return rows
end

function M.summary(model, opts)
    opts = opts or {}
    local layers = model:layers()
    local traced = layers
    if #layers == 0 then traced = { model } end
    local x = dummy_input(model, traced, opts)
    local rows = trace(model, traced, x, opts.channels_last)

    local widths = column_widths(opts.line_length or 76, { 0.45, 0.80, 1.0 })
    local aligns = { "left", "left", "right" }
    local out = { string.format('Model: "%s"', model.name) }
    out[#out + 1] = rule(widths, "┏", "━", "┳", "┓")
    out[#out + 1] = render_row({ "Layer (type)", "Output Shape", "Param #" }, widths, aligns, "┃")
    out[#out + 1] = rule(widths, "┡", "━", "╇", "┩")
    for i, r in ipairs(rows) do
        local layer = r[1]
        local n = 0
        for _, e in ipairs(layer:named_state()) do n = n + e[2]:numel() end
        local label = string.format("%s (%s)", layer.name, layer._keras_type)
        out[#out + 1] = render_row({ label, r[2], commas(n) }, widths, aligns, "│")
        if i < #rows then out[#out + 1] = rule(widths, "├", "─", "┼", "┤") end
    end
    out[#out + 1] = rule(widths, "└", "─", "┴", "┘")
    local tn, tb, nn_, nb = tensor_counts(model)
    out[#out + 1] = string.format(" Total params: %s (%s)", commas(tn + nn_), readable_size(tb + nb))
    out[#out + 1] = string.format(" Trainable params: %s (%s)", commas(tn), readable_size(tb))
    out[#out + 1] = string.format(" Non-trainable params: %s (%s)", commas(nn_), readable_size(nb))
    local text = table.concat(out, "\n")
    if opts.print ~= false then (opts.print_fn or print)(text) end
    return text
end

return M
