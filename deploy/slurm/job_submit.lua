--[[
Optional Slurm job_submit plugin (slurm.conf: JobSubmitPlugins=lua, this file as
/etc/slurm/job_submit.lua): a job submitted with --comment=flexible gets Kilowatch's suggested
start appended to its comment, as a local time and as a delay from submission, e.g.
  "flexible; kilowatch: --begin=2026-07-02T03:00:00 (or --begin=now+883minutes) saves about 310 L water, 4.1 kg CO2 (balanced)"
It only suggests: the job keeps its own --begin, and no job is ever rejected.

slurmctld runs this under its job write lock, so it must never wait on the network: it reads a
local file, /var/lib/kilowatch/slurm-advice.lua (KILOWATCH_ADVICE_FILE in slurmctld's
environment to move it), which kilowatch-slurm-advice.timer refreshes every 15 minutes from
Kilowatch's /api/v1/advice. No token is needed here. A missing or stale file leaves a note
that says so (docs/forecast.md, "Slurm").
]]

local ADVICE_FILE = os.getenv("KILOWATCH_ADVICE_FILE") or "/var/lib/kilowatch/slurm-advice.lua"

-- GPUs per node from --gres/--gpus-per-node ("gres/gpu:8", "gpu:4", "gres/gpu:h100:8").
local function gpus_of(job_desc)
   local tres = job_desc.tres_per_node or job_desc.gres or ""
   local n = tonumber(tres:match("gpu:[%w_]*:?(%d+)$") or tres:match("gpu:(%d+)")) or 0
   local nodes = tonumber(job_desc.min_nodes) or 1
   if nodes < 1 or nodes > 100000 then nodes = 1 end
   return n * nodes
end

-- The refreshed table, loaded as data: text only, no globals reachable from it.
local function load_advice()
   local chunk = loadfile(ADVICE_FILE, "t", {})
   if not chunk then return nil end
   local ok, a = pcall(chunk)
   if ok and type(a) == "table" and type(a.advice) == "table" and type(a.lengths) == "table" then return a end
   return nil
end

-- The note for a job of `gpus` GPUs and `hours` hours, from the advice for one GPU.
local function note_for(a, gpus, hours, now)
   local age = now - (tonumber(a.generated_s) or 0)
   if age > (tonumber(a.max_age_s) or 7200) then
      return string.format("kilowatch: no advice (the advice file is %d minutes old; is kilowatch-slurm-advice.timer running?)", age // 60)
   end
   -- The shortest refreshed length that covers the job.
   local len
   for _, l in ipairs(a.lengths) do
      if l >= hours then len = l break end
   end
   local e = len and a.advice[len]
   if not e then return string.format("kilowatch: no advice for a %d-hour job", hours) end
   if e.refused then return "kilowatch: no advice (" .. tostring(e.refused):sub(1, 120) .. ")" end
   for _, s in ipairs(e.starts or {}) do
      -- A start hour that ended since the refresh is skipped; one under way means now.
      if s.start_s + 3600 > now then
         local wait = math.max(0, s.start_s - now) // 60
         local note = string.format("kilowatch: --begin=%s (or --begin=now+%dminutes)", s.start_local, wait)
         -- Savings scale with the GPUs and, roughly, with the job's share of the refreshed length.
         local k = gpus * hours / len
         if s.water_l and s.co2_kg then
            note = note .. string.format(" saves about %.0f L water, %.1f kg CO2", s.water_l * k, s.co2_kg * k)
         elseif s.co2_kg then
            note = note .. string.format(" saves about %.1f kg CO2", s.co2_kg * k)
         end
         return note .. " (" .. tostring(a.weight) .. ")"
      end
   end
   return "kilowatch: start now (no better start ahead)"
end

function slurm_job_submit(job_desc, part_list, submit_uid)
   local comment = job_desc.comment or ""
   if not comment:find("flexible") then return slurm.SUCCESS end
   local gpus = gpus_of(job_desc)
   -- time_limit is in minutes; NO_VAL (4294967294) when not given.
   local minutes = tonumber(job_desc.time_limit) or 0
   if gpus < 1 or minutes < 1 or minutes > 48 * 60 then return slurm.SUCCESS end
   local a = load_advice()
   local note
   if a then
      note = note_for(a, gpus, math.ceil(minutes / 60), os.time())
   else
      note = "kilowatch: no advice (no advice file at " .. ADVICE_FILE .. ")"
   end
   job_desc.comment = comment .. "; " .. note
   slurm.log_info("kilowatch advice for uid %d: %s", submit_uid, note)
   return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   return slurm.SUCCESS
end

return slurm.SUCCESS
