-- wrk script of bench/soak.sh: the blog under mixed load, and the answers counted by status.
--
-- Per 100 requests of each connection: 60 reads (30 `GET /api/posts/{id}` over the seeded
-- posts, served by the cache; 20 `GET /api/posts?limit=20`; 10 `GET /api/posts/{id}/comments`),
-- 10 `GET /api/auth/me` (token checks), 15 writes (10 `POST /api/posts` with a slug of their
-- own, 5 `POST /api/posts/{id}/comments`), 10 `PUT /api/posts/{id}` of the seeded posts (cache
-- invalidations), 5 `POST /api/auth/login` (password hashing).
-- Environment: SOAK_TOKEN (a bearer token of SOAK_EMAIL), SOAK_EMAIL, SOAK_PASSWORD,
-- SOAK_POSTS (ids of the seeded posts, "first-last"), SOAK_RUN (unique per run).

local token = os.getenv("SOAK_TOKEN")
local email = os.getenv("SOAK_EMAIL")
local password = os.getenv("SOAK_PASSWORD")
local run = os.getenv("SOAK_RUN")
local first, last = string.match(os.getenv("SOAK_POSTS"), "(%d+)-(%d+)")
first, last = tonumber(first), tonumber(last)

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("tid", counter)
    table.insert(threads, thread)
end

local n = 0
local json = { ["Content-Type"] = "application/json" }
local authed = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
-- Seen statuses, as "200,201,…", and one counter global per status ("st_200"): wrk's
-- thread:get copies plain values only.
codes = ""

local function seeded()
    return math.random(first, last)
end

function request()
    n = n + 1
    local k = n % 100
    if k < 30 then
        return wrk.format("GET", "/api/posts/" .. seeded())
    elseif k < 50 then
        return wrk.format("GET", "/api/posts?limit=20")
    elseif k < 60 then
        return wrk.format("GET", "/api/posts/" .. seeded() .. "/comments?limit=20")
    elseif k < 70 then
        return wrk.format("GET", "/api/auth/me", authed)
    elseif k < 80 then
        local slug = string.format("soak-%s-%d-%d", run, tid, n)
        return wrk.format("POST", "/api/posts", authed, string.format(
            '{"title":"soak %d","slug":"%s","body":"a post written by the soak","published":true}', n, slug))
    elseif k < 85 then
        return wrk.format("POST", "/api/posts/" .. seeded() .. "/comments", json,
            '{"author":"soak","body":"a comment written by the soak"}')
    elseif k < 95 then
        local id = seeded()
        return wrk.format("PUT", "/api/posts/" .. id, authed, string.format(
            '{"title":"seeded %d, edit %d","slug":"seed-%s-%d","body":"edited by the soak","published":true}',
            id, n, run, id - first + 1))
    else
        return wrk.format("POST", "/api/auth/login", json, string.format(
            '{"email":"%s","password":"%s"}', email, password))
    end
end

function response(status, headers, body)
    local key = "st_" .. status
    local seen = _G[key]
    if seen == nil then
        codes = codes .. (codes == "" and "" or ",") .. status
        _G[key] = 1
    else
        _G[key] = seen + 1
    end
end

function done(summary, latency, requests)
    local total = {}
    for _, thread in ipairs(threads) do
        local seen = thread:get("codes")
        for code in string.gmatch(seen or "", "%d+") do
            total[code] = (total[code] or 0) + (thread:get("st_" .. code) or 0)
        end
    end
    local keys = {}
    for code in pairs(total) do table.insert(keys, code) end
    table.sort(keys)
    for _, code in ipairs(keys) do
        io.write(string.format("SOAK_STATUS %s %d\n", code, total[code]))
    end
    local e = summary.errors
    io.write(string.format("SOAK_SOCKET_ERRORS connect=%d read=%d write=%d timeout=%d\n",
        e.connect, e.read, e.write, e.timeout))
    io.write(string.format("SOAK_REQUESTS %d\n", summary.requests))
end
