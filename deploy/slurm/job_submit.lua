--[[
Optional Slurm job_submit plugin (slurm.conf: JobSubmitPlugins=lua, this file as
/etc/slurm/job_submit.lua): a job submitted with --comment=flexible gets Kilowatch's suggested
start appended to its comment, e.g.
  "flexible; kilowatch: --begin=2026-07-02T03:00:00 saves 310 L water, 4.1 kg CO2 (balanced)"
It only suggests: the job keeps its own --begin. It never rejects a job: if Kilowatch cannot be
reached within 2 s, or its forecast is stale, the comment says so or stays as it was.
Configure KILOWATCH_URL and KILOWATCH_READ_TOKEN in slurmctld's environment or in
/etc/default/kilowatch-slurm (read when KILOWATCH_URL is not in the environment).
]]

local URL = os.getenv("KILOWATCH_URL") or "http://127.0.0.1:8086"
local TOKEN = os.getenv("KILOWATCH_READ_TOKEN") or ""
local conf = (not os.getenv("KILOWATCH_URL")) and io.open("/etc/default/kilowatch-slurm")
if conf then
   for line in conf:lines() do
      local k, v = line:match("^(KILOWATCH_[%w_]+)=(.*)$")
      if k == "KILOWATCH_URL" then URL = v end
      if k == "KILOWATCH_READ_TOKEN" then TOKEN = v end
   end
   conf:close()
end

-- GPUs per node from --gres/--gpus-per-node ("gres/gpu:8", "gpu:4", "gres/gpu:h100:8").
local function gpus_of(job_desc)
   local tres = job_desc.tres_per_node or job_desc.gres or ""
   local n = tonumber(tres:match("gpu:[%w_]*:?(%d+)$") or tres:match("gpu:(%d+)")) or 0
   local nodes = tonumber(job_desc.min_nodes) or 1
   if nodes < 1 or nodes > 100000 then nodes = 1 end
   return n * nodes
end

function slurm_job_submit(job_desc, part_list, submit_uid)
   local comment = job_desc.comment or ""
   if not comment:find("flexible") then return slurm.SUCCESS end
   local gpus = gpus_of(job_desc)
   -- time_limit is in minutes; NO_VAL (4294967294) when not given.
   local minutes = tonumber(job_desc.time_limit) or 0
   if gpus < 1 or minutes < 1 or minutes > 48 * 60 then return slurm.SUCCESS end
   local hours = math.ceil(minutes / 60)
   local auth = TOKEN ~= "" and ("-H 'Authorization: Token " .. TOKEN .. "' ") or ""
   local cmd = string.format("curl -s --max-time 2 %s'%s/api/v1/advice?gpus=%d&hours=%d&within=48h'", auth, URL, gpus, hours)
   local p = io.popen(cmd)
   if not p then return slurm.SUCCESS end
   local body = p:read("*a") or ""
   p:close()
   local refused = body:match('"refused":"([^"]*)"')
   local best = body:match('"best":%[(.*)')
   local note
   if refused then
      note = "kilowatch: no advice (" .. refused:sub(1, 120) .. ")"
   elseif best then
      local start = best:match('"start_local":"([^"]+)"')
      local saves = best:match('"saves":(%b{})') or ""
      local water = tonumber(saves:match('"water_l":(%-?[%d%.eE+-]+)') or "")
      local co2 = tonumber(saves:match('"co2_kg":(%-?[%d%.eE+-]+)') or "")
      if start then
         note = string.format("kilowatch: --begin=%s", start)
         if water and co2 then note = note .. string.format(" (saves %.0f L water, %.1f kg CO2)", water, co2) end
      end
   end
   if note then
      job_desc.comment = comment .. "; " .. note
      slurm.log_info("kilowatch advice for uid %d: %s", submit_uid, note)
   end
   return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   return slurm.SUCCESS
end

return slurm.SUCCESS
