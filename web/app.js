// Stride dashboard: plain ES module, no build step. Every call is REST/JSON through Envoy's
// gRPC-JSON transcoder on the page's own origin (the paths of the protos' google.api.http
// annotations), with the token from sessionStorage as `authorization: Bearer …`.
// Server streams (WatchJob, StreamActivitySamples) arrive as one JSON object per line.

const { Chart } = window; // chart.umd.js, loaded by index.html
const TOKEN_KEY = "stride.token";
const ATHLETE_KEY = "stride.athlete";
const TERMINAL = new Set(["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"]);
const WEEKS = 12;
const MAX_PLOTTED = 1500; // heart-rate points drawn (every n-th sample beyond this)

const $ = (selector) => document.querySelector(selector);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) ?? "",
  athlete: null, // the Athlete message
  activities: [],
  weeklyChart: null,
  hrChart: null,
  watches: 0, // imports being watched
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const status = await response.json(); // a google.rpc.Status
    message = status.message || message;
    for (const detail of status.details ?? []) {
      for (const violation of detail.fieldViolations ?? []) {
        message += ` (${violation.field}: ${violation.description})`;
      }
    }
  } catch {
    // not JSON: keep the HTTP status
  }
  return new ApiError(response.status, message);
}

function url(path, query = {}) {
  const result = new URL(`/v1/${path}`, window.location.origin);
  for (const [key, value] of Object.entries(query)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") result.searchParams.append(key, item);
    }
  }
  return result;
}

/** One unary call: JSON in (or a Blob as the raw body), JSON out; ApiError otherwise. */
export async function api(path, { method = "GET", query, body } = {}) {
  const headers = { authorization: `Bearer ${state.token}` };
  const init = { method, headers };
  if (body instanceof Blob) {
    headers["content-type"] = "application/octet-stream";
    init.body = body;
  } else if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path, query), init);
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** A server stream: yields each newline-delimited JSON object as it arrives. */
export async function* stream(path, query) {
  const response = await fetch(url(path, query), {
    headers: { authorization: `Bearer ${state.token}` },
  });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

// --- formatting -------------------------------------------------------------------------

const seconds = (duration) => (duration ? parseFloat(duration) : 0); // "1234.5s"
const km = (meters) => (meters ?? 0) / 1000;

function clock(total) {
  const s = Math.round(total);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function pace(activity) {
  const distance = km(activity.distanceMeters);
  const time = seconds(activity.movingTime) || seconds(activity.elapsedTime);
  return distance > 0.1 && time ? `${clock(time / distance)} /km` : "—";
}

function day(timestamp, timeZone) {
  return new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", timeZone: timeZone || undefined,
  }).format(new Date(timestamp));
}

// The calendar date a timestamp falls on in a time zone, as google.type.Date fields.
function dateIn(timestamp, timeZone) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-CA", {
      year: "numeric", month: "numeric", day: "numeric", timeZone: timeZone || undefined,
    }).formatToParts(new Date(timestamp)).map((part) => [part.type, part.value]),
  );
  return { year: Number(parts.year), month: Number(parts.month), day: Number(parts.day) };
}

const dateLabel = (date) =>
  new Date(Date.UTC(date.year, date.month - 1, date.day)).toLocaleDateString(undefined, {
    day: "numeric", month: "short", timeZone: "UTC",
  });

const sport = (value) =>
  (value ?? "").replace("SPORT_TYPE_", "").toLowerCase().replaceAll("_", " ") || "—";

function text(element, value) {
  element.textContent = value;
  return element;
}

function cell(row, value, className) {
  const td = text(document.createElement("td"), value);
  if (className) td.className = className;
  row.append(td);
  return td;
}

function showError(error) {
  const banner = $("#error");
  if (!error) {
    banner.hidden = true;
    return;
  }
  banner.hidden = false;
  banner.textContent = error.message ?? String(error);
  if (error.status === 401) signOut(false);
}

// --- sign in ----------------------------------------------------------------------------

function athleteName(value) {
  const id = value.trim().replace(/^\/+|\/+$/g, "");
  return id.startsWith("athletes/") ? id : `athletes/${id}`;
}

/** Sign in: the athlete id (an athlete's token) or the first athlete (the admin token). */
export async function signIn(token, athleteId) {
  state.token = token.trim();
  let athlete;
  const picker = $("#athlete-picker");
  picker.hidden = true;
  if (athleteId && athleteId.trim()) {
    athlete = await api(athleteName(athleteId));
  } else {
    let listed;
    try {
      listed = await api("athletes", { query: { pageSize: 200 } });
    } catch (error) {
      if (error.status === 403) {
        throw new ApiError(403, "An athlete's token needs the athlete id: enter it too.");
      }
      throw error;
    }
    if (!listed.athletes.length) throw new ApiError(404, "There are no athletes yet.");
    picker.replaceChildren(
      ...listed.athletes.map((a) => {
        const option = text(document.createElement("option"), a.displayName);
        option.value = a.name;
        return option;
      }),
    );
    picker.hidden = false;
    athlete = listed.athletes[0];
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  await showAthlete(athlete);
}

async function showAthlete(athlete) {
  state.athlete = athlete;
  sessionStorage.setItem(ATHLETE_KEY, athlete.name);
  $("#athlete-picker").value = athlete.name;
  $("#athlete-name").textContent = athlete.displayName;
  $("#sign-in").hidden = true;
  $("#who").hidden = false;
  $("#dashboard").hidden = false;
  $("#activity").hidden = true;
  showError(null);
  await refresh();
}

function signOut(clearError = true) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ATHLETE_KEY);
  state.token = "";
  state.athlete = null;
  $("#dashboard").hidden = true;
  $("#who").hidden = true;
  $("#sign-in").hidden = false;
  $("#jobs").replaceChildren();
  if (clearError) showError(null);
}

// --- weekly distance and recent activities --------------------------------------------------

/** Reload the activity list and the chart (after sign-in and after each import). */
export async function refresh() {
  const athlete = state.athlete;
  const listed = await api(`${athlete.name}/activities`, {
    query: { pageSize: 20, descending: true },
  });
  state.activities = listed.activities;
  renderActivities(listed.activities);
  // Twelve weeks up to the newest activity (imports are often old), or up to today.
  const newest = listed.activities[0];
  const end = dateIn(newest ? newest.startTime : Date.now(), athlete.timeZone);
  const start = new Date(Date.UTC(end.year, end.month - 1, end.day - 7 * (WEEKS - 1)));
  const summary = await api(`${athlete.name}/trainingSummary`, {
    query: {
      period: "SUMMARY_PERIOD_WEEK",
      "startDate.year": start.getUTCFullYear(),
      "startDate.month": start.getUTCMonth() + 1,
      "startDate.day": start.getUTCDate(),
      "endDate.year": end.year,
      "endDate.month": end.month,
      "endDate.day": end.day,
    },
  });
  renderWeekly(summary);
}

function renderWeekly(summary) {
  const periods = summary.periods ?? [];
  const labels = periods.map((p) => dateLabel(p.startDate));
  const distances = periods.map((p) => Number(km(p.totals.distanceMeters).toFixed(2)));
  const counts = periods.map((p) => p.totals.activityCount);
  const first = periods[0]?.startDate;
  const last = periods.at(-1)?.endDate;
  $("#weekly-range").textContent =
    first && last ? `${dateLabel(first)} ${first.year} – ${dateLabel(last)} ${last.year}` : "";
  const total = distances.reduce((a, b) => a + b, 0);
  const runs = counts.reduce((a, b) => a + b, 0);
  $("#weekly-total").textContent =
    `${total.toFixed(1)} km in ${runs} ${runs === 1 ? "activity" : "activities"} over ${periods.length} weeks`;
  const canvas = $("#weekly-chart");
  canvas.dataset.weeks = String(periods.length);
  state.weeklyChart?.destroy();
  state.weeklyChart = new Chart(canvas, {
    type: "bar",
    data: {
      labels,
      datasets: [{ label: "km", data: distances, backgroundColor: "#e4572e", borderRadius: 3 }],
    },
    options: {
      maintainAspectRatio: false,
      animation: false,
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (item) =>
              `${item.parsed.y.toFixed(1)} km, ${counts[item.dataIndex]} ${counts[item.dataIndex] === 1 ? "activity" : "activities"}`,
          },
        },
      },
      scales: { y: { beginAtZero: true, title: { display: true, text: "km" } } },
    },
  });
}

function renderActivities(activities) {
  const body = $("#activities");
  body.replaceChildren();
  $("#no-activities").hidden = activities.length > 0;
  for (const activity of activities) {
    const row = document.createElement("tr");
    row.dataset.name = activity.name;
    row.tabIndex = 0;
    cell(row, day(activity.startTime, activity.timeZone || state.athlete.timeZone));
    cell(row, activity.title);
    cell(row, sport(activity.sportType));
    cell(row, `${km(activity.distanceMeters).toFixed(2)} km`, "num");
    cell(row, clock(seconds(activity.elapsedTime)), "num");
    cell(row, pace(activity), "num");
    const grade = activity.ageGrade;
    cell(row, grade ? `${grade.ageGradedPercent.toFixed(1)} %` : "—", "num age-grade");
    row.addEventListener("click", () => openActivity(activity).catch(showError));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") openActivity(activity).catch(showError);
    });
    body.append(row);
  }
}

// --- one activity: route and heart rate ------------------------------------------------------

/** Show an activity: its samples streamed over REST, drawn as a route and a heart-rate line. */
export async function openActivity(activity) {
  const section = $("#activity");
  section.hidden = false;
  section.dataset.name = activity.name;
  $("#activity-title").textContent = activity.title;
  const facts = [
    day(activity.startTime, activity.timeZone || state.athlete.timeZone),
    `${km(activity.distanceMeters).toFixed(2)} km`,
    clock(seconds(activity.elapsedTime)),
  ];
  if (activity.averageHeartRateBpm) facts.push(`avg ${Math.round(activity.averageHeartRateBpm)} bpm`);
  if (activity.ageGrade) facts.push(`age grade ${activity.ageGrade.ageGradedPercent.toFixed(1)} %`);
  $("#activity-facts").textContent = facts.join(" · ");
  $("#route-caption").textContent = "Loading samples…";
  $("#hr-caption").textContent = "";
  const samples = [];
  for await (const chunk of stream(`${activity.name}:streamSamples`, {
    channels: ["SAMPLE_CHANNEL_LAT_LNG", "SAMPLE_CHANNEL_HEART_RATE"],
    chunkSize: 5000,
  })) {
    samples.push(...chunk.samples);
  }
  if (section.dataset.name !== activity.name) return; // another one was opened meanwhile
  drawRoute(samples.filter((s) => s.latLng).map((s) => s.latLng));
  drawHeartRate(samples);
  section.scrollIntoView({ behavior: "smooth", block: "start" });
}

function drawRoute(points) {
  const svg = $("#route");
  svg.replaceChildren();
  svg.dataset.points = String(points.length);
  if (points.length < 2) {
    $("#route-caption").textContent = "No GPS track recorded.";
    return;
  }
  // Equirectangular projection around the mean latitude, fitted into the view box.
  const meanLat = points.reduce((sum, p) => sum + p.latitude, 0) / points.length;
  const xs = points.map((p) => p.longitude * Math.cos((meanLat * Math.PI) / 180));
  const ys = points.map((p) => -p.latitude);
  const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const [width, height, pad] = [400, 300, 12];
  const scale = Math.min((width - 2 * pad) / (maxX - minX || 1), (height - 2 * pad) / (maxY - minY || 1));
  const offsetX = (width - (maxX - minX) * scale) / 2;
  const offsetY = (height - (maxY - minY) * scale) / 2;
  const xy = xs.map((x, i) => [(x - minX) * scale + offsetX, (ys[i] - minY) * scale + offsetY]);
  const ns = "http://www.w3.org/2000/svg";
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
  line.setAttribute("class", "route-line");
  svg.append(line);
  for (const [[x, y], kind] of [[xy[0], "start"], [xy.at(-1), "finish"]]) {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x.toFixed(1));
    dot.setAttribute("cy", y.toFixed(1));
    dot.setAttribute("r", "5");
    dot.setAttribute("class", kind);
    svg.append(dot);
  }
  $("#route-caption").textContent = `Route: ${points.length} GPS points (green start, dark finish).`;
}

function drawHeartRate(samples) {
  const canvas = $("#hr-chart");
  state.hrChart?.destroy();
  state.hrChart = null;
  const withHr = samples.filter((s) => s.heartRateBpm);
  canvas.dataset.points = String(withHr.length);
  if (!withHr.length) {
    $("#hr-caption").textContent = "No heart rate recorded.";
    return;
  }
  const start = Date.parse(samples[0].time);
  const step = Math.ceil(withHr.length / MAX_PLOTTED);
  const data = withHr
    .filter((_, i) => i % step === 0)
    .map((s) => ({ x: (Date.parse(s.time) - start) / 60000, y: s.heartRateBpm }));
  state.hrChart = new Chart(canvas, {
    type: "line",
    data: { datasets: [{ label: "bpm", data, borderColor: "#c0392b", borderWidth: 1.5, pointRadius: 0 }] },
    options: {
      maintainAspectRatio: false,
      animation: false,
      parsing: false,
      plugins: { legend: { display: false } },
      scales: {
        x: { type: "linear", max: data.at(-1).x, title: { display: true, text: "minutes" } },
        y: { title: { display: true, text: "bpm" } },
      },
    },
  });
  const bpm = withHr.map((s) => s.heartRateBpm);
  $("#hr-caption").textContent =
    `Heart rate: ${Math.min(...bpm)}–${Math.max(...bpm)} bpm over ${withHr.length} samples.`;
}

// --- import: upload, then watch the job to its end ---------------------------------------------

function jobRow(fileName) {
  const item = document.createElement("li");
  item.className = "job";
  item.innerHTML = `<div class="job-head"><span class="file"></span><span class="state"></span></div>
    <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0">
      <div class="fill"></div></div><div class="job-text muted">uploading…</div><ul class="failures"></ul>`;
  text(item.querySelector(".file"), fileName);
  $("#jobs").prepend(item);
  return item;
}

function showProgress(item, event) {
  const progress = event.progress ?? {};
  const result = event.result ?? {};
  const done = Number(progress.done ?? 0);
  const total = progress.total === undefined ? null : Number(progress.total);
  const finished = TERMINAL.has(event.state);
  let percent = total ? Math.min(100, Math.floor((100 * done) / total)) : 0;
  if (event.state === "JOB_STATE_SUCCEEDED") percent = 100;
  const bar = item.querySelector(".bar");
  bar.setAttribute("aria-valuenow", String(percent));
  bar.classList.toggle("indeterminate", total === null && !finished);
  item.querySelector(".fill").style.width = `${percent}%`;
  item.dataset.state = event.state ?? "";
  text(item.querySelector(".state"), (event.state ?? "").replace("JOB_STATE_", "").toLowerCase());
  const counts = ["created", "updated", "unchanged", "skipped", "failed"]
    .map((key) => `${Number(result[key] ?? 0)} ${key}`)
    .join(" · ");
  const files = total === null ? `${done} files` : `${done} / ${total} files`;
  const message = progress.message ? ` — ${progress.message}` : "";
  text(item.querySelector(".job-text"), `${percent} % · ${files} · ${counts}${message}`);
  if (event.itemError) {
    const failure = text(document.createElement("li"), `${event.item}: ${event.itemError.message}`);
    item.querySelector(".failures").append(failure);
  }
  if (event.state === "JOB_STATE_FAILED" && event.error) {
    item.querySelector(".failures").append(text(document.createElement("li"), event.error.message));
  }
}

/** Upload one file and follow its import job live until it ends (resuming if cut off). */
export async function importFile(file) {
  const athlete = state.athlete;
  const item = jobRow(file.name);
  state.watches += 1;
  try {
    const job = await api(`${athlete.name}/activities:upload`, {
      method: "POST",
      query: { file_name: file.name, size_bytes: String(file.size) },
      body: file,
    });
    item.dataset.job = job.name;
    showProgress(item, job);
    let after = 0;
    let last = job;
    for (let attempt = 0; !TERMINAL.has(last.state) && attempt < 5; attempt += 1) {
      try {
        for await (const event of stream(`${job.name}:watch`, { afterSequence: after })) {
          after = Math.max(after, Number(event.sequence ?? 0));
          last = event;
          showProgress(item, event);
        }
      } catch (error) {
        if (error instanceof ApiError) throw error; // refused: no point retrying
        await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
      }
    }
    if (athlete === state.athlete) await refresh().catch(showError);
    return last;
  } catch (error) {
    item.dataset.state = "JOB_STATE_FAILED";
    text(item.querySelector(".job-text"), error.message ?? String(error));
    throw error;
  } finally {
    state.watches -= 1;
  }
}

export async function importFiles(files) {
  await Promise.all([...files].map((file) => importFile(file).catch(showError)));
}

// --- wiring ---------------------------------------------------------------------------------

function wire() {
  $("#sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("#token").value, $("#athlete-id").value).catch(showError);
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#athlete-picker").addEventListener("change", (event) => {
    api(event.target.value).then(showAthlete).catch(showError);
  });
  const drop = $("#drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    importFiles(event.dataTransfer.files);
  });
  $("#file-input").addEventListener("change", (event) => {
    importFiles([...event.target.files]);
    event.target.value = "";
  });
}

async function start() {
  wire();
  const athlete = sessionStorage.getItem(ATHLETE_KEY);
  if (state.token && athlete) {
    try {
      await showAthlete(await api(athlete));
      return;
    } catch (error) {
      showError(error);
    }
  }
  signOut(false);
}

// For tests and the console: the page's own functions.
window.stride = { state, api, stream, signIn, refresh, openActivity, importFile, importFiles };
start();
