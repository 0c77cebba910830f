-- whorl.plot: figures drawn with cairo (lua/bind_plot.c).  See docs/plot.md.
local whorl = require "whorl"

local plot = {}
for k, v in pairs(whorl.plot) do plot[k] = v end

return plot
