-- wrk script: resolve production of a random model among the seeded ones, as a serving agent.
local models = tonumber(os.getenv("MODELS") or "1000")
local token = os.getenv("TOKEN") or "bench-agent-token"
math.randomseed(42)
request = function()
  local m = string.format("model-%05d", math.random(0, models - 1))
  return wrk.format("GET", "/v1/resolve?ref=" .. m .. "@production&env=prod", { ["Authorization"] = "Bearer " .. token })
end
