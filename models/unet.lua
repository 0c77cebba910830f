-- A U-Net for restoring prints (the published winners of fingerprint
-- denoising are U-Nets): a custom nn.Module with a plain Lua forward,
-- registered as "UNet" with module = "unet", so nn.from_config, whorl.save
-- and whorl.load rebuild it without this script being required first.
--
--   local unet = require "unet"
--   local model = unet{depth = 3, filters = 16, seed = 13}
--   local y = model(x)                  -- (N, C, H, W) -> (N, out_channels, H, W), sigmoid
--
--   encoder:  block(channels -> f), MaxPool 2, block(f -> 2f), MaxPool 2, ...   (depth poolings)
--   bottleneck: block(f*2^(depth-1) -> f*2^depth)
--   decoder:  per level, upsample (nearest, or a 2x2 stride-2 ConvTranspose2d
--             halving the width), concatenate the encoder block's output
--             (the skip) along channels, block(-> f*2^level)
--   head:     1x1 convolution, sigmoid
-- A block is two kernel_size x kernel_size "same" convolutions, each
-- followed by ReLU (with batch_norm: convolution without bias, BatchNorm2d, ReLU).
--
-- Options:
--   depth        2, the number of poolings; inputs must be divisible by 2^depth
--   filters      16, the first level's width (doubled at every level), or a
--                list of depth + 1 widths, one per level, the bottleneck's
--                last ({16, 32, 64} is the default); with a list, depth is
--                #filters - 1 unless given (and then it must agree)
--   kernel_size  3
--   batch_norm   false
--   channels     1, input channels
--   out_channels 1
--   up           "upsample" (nearest) or "transpose" (ConvTranspose2d)
--   head         true; false leaves out the 1x1 head and returns the last
--                decoder block's features (filters channels), for models
--                that put their own heads on the trunk (models/masked.lua)
--   seed         draw the weights from nn.init.generator(seed); nil: the global generator
--   name, dtype
local whorl = require "whorl"
local nn = require "whorl.nn"
local shape_str = require("whorl.nn.module").shape_str

local DEFAULTS = { depth = 2, filters = 16, kernel_size = 3, batch_norm = false, channels = 1,
    out_channels = 1, up = "upsample", head = true }
local ALLOWED = { seed = true, name = true, dtype = true }
for k in pairs(DEFAULTS) do ALLOWED[k] = true end

local UNet = nn.Module:extend("UNet", { module = "unet" })

-- The width of every level (depth + 1 of them, the bottleneck's last), from
-- filters as a number (doubled per level) or a list; sets o.depth from a list.
local function widths_of(who, o, depth_given)
    local f, widths = o.filters, {}
    if type(f) == "table" then
        if #f < 1 then error(who .. ": filters must be a positive integer or a non-empty list of them", 4) end
        for i, w in ipairs(f) do widths[i] = math.tointeger(w) or w end
        if depth_given and o.depth ~= #f - 1 then
            error(string.format("%s: depth %s disagrees with the %d widths of filters (depth + 1 expected)",
                who, tostring(o.depth), #f), 4)
        end
        o.depth = #f - 1
    else
        if math.type(o.depth) ~= "integer" then return {} end -- reported by the caller
        if math.type(f) ~= "integer" or f < 1 then
            error(string.format("%s: filters must be a positive integer or a list of them, got %s",
                who, tostring(f)), 4)
        end
        for level = 0, o.depth do widths[level + 1] = f << level end
    end
    for i, w in ipairs(widths) do
        if math.type(w) ~= "integer" or w < 1 then
            error(string.format("%s: filters must be positive integers, got %s at level %d", who, tostring(w), i), 4)
        end
    end
    return widths
end

local function options(who, opts)
    opts = opts or {}
    if type(opts) ~= "table" then error(who .. ": options must be a table", 3) end
    for key in pairs(opts) do
        if not ALLOWED[key] then error(string.format("%s: unknown option '%s'", who, tostring(key)), 3) end
    end
    local o = {}
    for k, v in pairs(DEFAULTS) do o[k] = v end
    -- JSON (a checkpoint's config) gives integers back as floats: take them as integers
    for k, v in pairs(opts) do o[k] = math.tointeger(v) or v end
    o.widths = widths_of(who, o, opts.depth ~= nil)
    for _, k in ipairs{ "depth", "kernel_size", "channels", "out_channels" } do
        local v = o[k]
        if math.type(v) ~= "integer" or v < (k == "depth" and 0 or 1) then
            error(string.format("%s: %s must be a positive integer, got %s", who, k, tostring(v)), 3)
        end
    end
    if o.up ~= "upsample" and o.up ~= "transpose" then
        error(who .. ": up must be \"upsample\" or \"transpose\", got " .. tostring(o.up), 3)
    end
    return o
end

-- Two convolutions (+ batch norm) + ReLU.
local function block(cin, cout, o)
    local layers = {}
    for i = 1, 2 do
        if o.batch_norm then
            layers[#layers + 1] = nn.Conv2d(i == 1 and cin or cout, cout, o.kernel_size,
                { padding = "same", bias = false, dtype = o.dtype })
            layers[#layers + 1] = nn.BatchNorm2d(cout, { dtype = o.dtype })
            layers[#layers + 1] = nn.ReLU()
        else
            layers[#layers + 1] = nn.Conv2d(i == 1 and cin or cout, cout, o.kernel_size,
                { padding = "same", activation = "relu", dtype = o.dtype })
        end
    end
    return nn.Sequential(layers)
end

local function build(self, o)
    local widths, depth = o.widths, o.depth
    local enc, dec, ups = {}, {}, {}
    local cin = o.channels
    for level = 1, depth do
        enc[#enc + 1] = block(cin, widths[level], o)
        cin = widths[level]
    end
    self.encoders = nn.ModuleList(table.unpack(enc))
    self.pool = nn.MaxPool2d(2)
    self.bottleneck = block(cin, widths[depth + 1], o)
    cin = widths[depth + 1]
    for level = depth, 1, -1 do
        local w = widths[level]
        if o.up == "transpose" then
            ups[#ups + 1] = nn.ConvTranspose2d(cin, w, 2, { stride = 2, dtype = o.dtype })
            dec[#dec + 1] = block(w + w, w, o)
        else
            ups[#ups + 1] = nn.Upsample{ scale = 2 }
            dec[#dec + 1] = block(cin + w, w, o)
        end
        cin = w
    end
    self.ups = nn.ModuleList(table.unpack(ups))
    self.decoders = nn.ModuleList(table.unpack(dec))
    if o.head then
        self.head = nn.Conv2d(cin, o.out_channels, 1, { activation = "sigmoid", dtype = o.dtype })
    end
end

function UNet:__init(opts)
    local o = options("unet", opts)
    rawset(self, "opts", o)
    rawset(self, "features", o.widths[1])   -- channels of the trunk's output when head = false
    if o.seed ~= nil then
        nn.init.with_seed(o.seed, build, self, o)
    else
        build(self, o)
    end
end

function UNet:forward(x)
    local o = self.opts
    local div = 2 ^ o.depth // 1
    if x:dim() ~= 4 then
        error("unet: expected input of shape (N, C, H, W), got " .. shape_str(x), 0)
    end
    local s = x:size()
    if s[2] ~= o.channels then
        error(string.format("unet: expected %d input channels, got %s", o.channels, shape_str(x)), 0)
    end
    if s[3] % div ~= 0 or s[4] % div ~= 0 then
        error(string.format("unet: input height and width must be divisible by 2^depth = %d, got %s",
            div, shape_str(x)), 0)
    end
    local skips, h = {}, x
    for i = 1, o.depth do
        h = self.encoders[i](h)
        skips[i] = h
        h = self.pool(h)
    end
    h = self.bottleneck(h)
    for j = 1, o.depth do
        local skip = skips[o.depth - j + 1]
        h = self.decoders[j](whorl.cat({ self.ups[j](h), skip }, 2))
    end
    if self.head then return self.head(h) end
    return h
end

function UNet:extra_repr()
    local o = self.opts
    return string.format("depth=%d, filters=%s, kernel_size=%d, batch_norm=%s, up=%s", o.depth,
        table.concat(o.widths, ","), o.kernel_size, tostring(o.batch_norm), o.up)
end

return UNet
