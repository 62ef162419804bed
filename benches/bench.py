"""crmflow vs DuckDB, stage by stage, at several scales (see benches/run).

Each measured command runs as its own process under /usr/bin/time, so wall time and
peak RSS are the process's own. DuckDB does the same work on the same files:
ingest of the CSV/TSV exports to Parquet, twice (read_csv -> COPY TO one file, zstd; and
a script writing what crmflow writes: normalised, deduplicated, a folder per business
date), the heuristic attribution models over crmflow's touchpoints/conversions Parquet,
and the cohort and RFM marts. The report is the ratio crmflow / DuckDB per stage (<= 1.0:
crmflow faster).

Runs on one machine vary (DuckDB's heuristic attribution at 1M took 38.9-56.0 s in one
session), so each compared stage runs `--repeat` times, crmflow and DuckDB interleaved
(crmflow, DuckDB, crmflow, DuckDB, ...): the table gives each side's median and their
ratio, the note every pair's ratio, and the JSON every run.
"""
import argparse, datetime, json, os, platform, shutil, statistics, subprocess, sys, tempfile, textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AS_OF = "2026-11-20"


def timed(cmd, env=None, cwd=None):
    """Runs cmd; returns (seconds, peak RSS MiB, stdout)."""
    out = tempfile.NamedTemporaryFile(delete=False)
    full = ["/usr/bin/time", "-f", "%e %M", "-o", out.name] + cmd
    p = subprocess.run(full, capture_output=True, text=True, env=env, cwd=cwd)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    secs, kib = open(out.name).read().split()[-2:]
    os.unlink(out.name)
    return float(secs), int(kib) / 1024, p.stdout


def duck(sql, threads):
    code = textwrap.dedent(f"""
        import duckdb, sys
        con = duckdb.connect()
        con.execute("SET threads={threads}")
        for stmt in {sql!r}.split(";\\n"):
            if stmt.strip():
                r = con.execute(stmt).fetchall()
        print(r[-1][0] if r else 0)
    """)
    return timed([sys.executable, "-c", code])


# The six heuristic models of spec/marts.md.
MODELS = ("first_touch", "last_non_direct", "last_touch", "linear", "position_based", "time_decay")


def checks(queries):
    """DuckDB statements that fail the script when a query returns a row: the data tests
    crmflow runs on the same tables as it builds them (in each model's .toml)."""
    return "".join(f"SELECT CASE WHEN count(*) > 0 THEN error('crmflow data test {i} fails') ELSE 0 END "
                   f"FROM ({q});\n" for i, q in enumerate(queries, 1))


def interleaved(run_crmflow, run_duckdb, repeat):
    """Runs crmflow and DuckDB `repeat` times, the one first, then the other, in turn
    (crmflow first in pairs 1, 3, ...), so that neither side always has the warmer page
    cache; each run returns (seconds, peak RSS MiB). Returns the row fields: medians, the
    worst peak RSS, every run and every pair's ratio."""
    return interleaved_with(run_crmflow, [run_duckdb], repeat)[0]


def interleaved_with(run_crmflow, duckdb_runs, repeat):
    """[`interleaved`] against several DuckDB scripts at once: each round runs crmflow
    once and every script once (crmflow first in rounds 1, 3, ..., last in the others),
    and each script's row compares it with the same crmflow runs."""
    ours, theirs = [], [[] for _ in duckdb_runs]
    for i in range(repeat):
        steps = [lambda: ours.append(run_crmflow())]
        steps += [lambda j=j, run=run: theirs[j].append(run()) for j, run in enumerate(duckdb_runs)]
        for step in steps if i % 2 == 0 else reversed(steps):
            step()
    rows = []
    for runs in theirs:
        pairs = [round(c / d, 2) for (c, _), (d, _) in zip(ours, runs)]
        rows.append(dict(crmflow_s=round(statistics.median(s for s, _ in ours), 2),
                         crmflow_rss_mb=max(mb for _, mb in ours),
                         duckdb_s=round(statistics.median(s for s, _ in runs), 2),
                         duckdb_rss_mb=max(mb for _, mb in runs),
                         crmflow_runs=[s for s, _ in ours], duckdb_runs=[s for s, _ in runs], pair_ratios=pairs))
    return rows


def pairs_note(row):
    """The note's account of the interleaved runs."""
    if len(row.get("pair_ratios", [])) < 2:
        return ""
    return (f"medians of {len(row['pair_ratios'])} interleaved pairs, pair ratios "
            + " / ".join(f"{r:.2f}" for r in row["pair_ratios"]) + "; ")


def job_file(data, lake, path):
    text = (REPO / "jobs/nightly.toml").read_text()
    text = text.replace("../crmflow-demo/lake", str(lake)).replace("../data/sample", str(data))
    text = text.replace('"../sql"', f'"{REPO / "sql"}"')
    path.write_text(text)


def sources_job(job, lake, path, names, suffix):
    """The same job with only the sources `names`, into the lake `<lake>-<suffix>`."""
    text = job.read_text()
    head, *blocks = text.split("[[sources]]")
    keep = [b for b in blocks if any(f'name = "{n}"' in b for n in names)]
    path.write_text(head.replace(str(lake), f"{lake}-{suffix}") + "".join("[[sources]]" + b for b in keep))


def duck_metrica_same_output(files, out):
    """DuckDB writing what crmflow's Metrica ingest writes: typed columns, placeholders to
    NULL, local times to UTC, ClickHouse arrays to lists, the visits deduplicated on
    (counterID, visitID) with the latest file's winning, the source file on every row,
    one Parquet folder per business date. Left out: line numbers (read_csv has none; a
    key repeated within a file keeps an arbitrary row), the cut-off and the quarantine."""
    def array(column, cast=""):
        items = f"string_split(nullif(trim(\"ym:s:{column}\", '[]'), ''), ',')"
        return f"list_transform({items}, lambda x: x::{cast})" if cast else items
    return f"""
COPY (
SELECT "ym:s:visitID" AS visit_id, "ym:s:counterID" AS counter_id,
  timezone('Europe/Moscow', "ym:s:dateTime") AS visit_at, "ym:s:clientID" AS client_id,
  nullif("ym:s:startURL", '') AS start_url, nullif("ym:s:lastTrafficSource", '') AS traffic_type,
  nullif("ym:s:lastAdvEngine", '') AS adv_engine, nullif("ym:s:lastSearchEngine", '') AS search_engine,
  nullif(nullif("ym:s:lastUTMSource", ''), '(not set)') AS utm_source,
  nullif(nullif("ym:s:lastUTMMedium", ''), '(not set)') AS utm_medium,
  nullif(nullif("ym:s:lastUTMCampaign", ''), '(not set)') AS utm_campaign,
  nullif(nullif("ym:s:lastUTMContent", ''), '(not set)') AS utm_content,
  nullif(nullif("ym:s:lastUTMTerm", ''), '(not set)') AS utm_term,
  "ym:s:deviceCategory" AS device_category, "ym:s:pageViews" AS page_views,
  "ym:s:visitDuration" AS visit_duration_s, "ym:s:bounce" = 1 AS bounce,
  {array("purchaseID")} AS purchase_ids, {array("purchaseRevenue", "double")} AS purchase_revenue,
  {array("goalsID")} AS goal_ids, filename AS _source_file, CAST("ym:s:dateTime" AS DATE) AS dt
FROM read_csv({[str(p) for p in files]}, delim='\\t', quote='', escape='', header=true, filename=true,
  ignore_errors=true, strict_mode=false, types={{'ym:s:visitID': 'VARCHAR', 'ym:s:clientID': 'VARCHAR',
  'ym:s:counterID': 'VARCHAR', 'ym:s:dateTime': 'TIMESTAMP'}})
QUALIFY row_number() OVER (PARTITION BY counter_id, visit_id ORDER BY filename DESC) = 1
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt));
SELECT 1"""


# DuckDB macros of crmflow's normalisation (crmflow_core::normalize): a trimmed text or
# NULL, an email (one `@`, not first, a `.` after it, no space) lower-cased, a phone to
# E.164 (`+` and 8-15 digits; without `+`, Russian numbers of 10 or 11 digits).
NORMALISE_MACROS = r"""CREATE MACRO txt(v) AS nullif(trim(v), '');
CREATE MACRO email_of(v) AS CASE WHEN regexp_full_match(trim(v), '[^@\s]+@[^@\s]*\.[^@\s]*') THEN lower(trim(v)) END;
CREATE MACRO e164_of(plus, d) AS CASE WHEN plus THEN CASE WHEN length(d) BETWEEN 8 AND 15 AND (d[1] <> '7' OR length(d) = 11) THEN '+' || d END
  WHEN length(d) = 11 AND d[1] IN ('7', '8') THEN '+7' || d[2:] WHEN length(d) = 10 AND d[1] IN ('3', '4', '8', '9') THEN '+7' || d END;
CREATE MACRO phone_of(v) AS e164_of(starts_with(trim(v), '+'), regexp_replace(v, '[^0-9]', '', 'g'));
CREATE MACRO decimal_of(v) AS try_cast(replace(trim(v), ',', '.') AS DOUBLE);
"""


def duck_messages_same_output(files, out):
    """DuckDB writing what crmflow's message events ingest writes: the recipient split
    into a normalised email or E.164 phone, channel and event lower-cased, local times
    to UTC, the source file on every row, one Parquet folder per business date. Left out:
    line numbers, the cut-off and the quarantine (an unparseable time drops the row)."""
    return NORMALISE_MACROS + f"""COPY (
WITH typed AS (
  SELECT *, timezone('Europe/Moscow', try_cast(trim(event_at) AS TIMESTAMP)) AS at_utc
  FROM read_csv({[str(p) for p in files]}, delim=',', header=true, filename=true, ignore_errors=true,
    strict_mode=false, all_varchar=true)
)
SELECT lower(txt(channel)) AS channel, txt(campaign_id) AS campaign_id, txt(campaign_name) AS campaign_name,
  CASE WHEN contains(recipient, '@') THEN email_of(recipient) END AS email,
  CASE WHEN NOT contains(recipient, '@') THEN phone_of(recipient) END AS phone,
  lower(txt(event)) AS event, at_utc AS event_at, filename AS _source_file,
  CAST(timezone('Europe/Moscow', at_utc) AS DATE) AS dt
FROM typed WHERE at_utc IS NOT NULL
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt));
SELECT 1"""


def duck_shopify_same_output(files, out):
    """DuckDB writing what crmflow's Shopify ingest writes: `orders` (an order's first
    row: typed, normalised email, the first valid of its three phones, times with their
    offsets to UTC) and `order_items` (every row of the order, numbered, with the order's
    time), each order taken from the latest file that has it, the source file on every
    row, one Parquet folder per business date and table. Left out: line numbers (items
    are numbered in read order), an order repeated within one file (its blocks merge),
    the cut-off and the quarantine (an unparseable time drops the order)."""
    return NORMALISE_MACROS + f"""CREATE TEMP TABLE s AS SELECT * FROM read_csv({[str(p) for p in files]}, delim=',',
  header=true, filename=true, ignore_errors=true, strict_mode=false, all_varchar=true);
CREATE TEMP TABLE firsts AS
SELECT *, txt(ltrim(trim("Name"), '#')) AS order_key,
  try_strptime(trim("Created at"), '%Y-%m-%d %H:%M:%S %z') AS created_tz
FROM s WHERE txt("Created at") IS NOT NULL AND txt(ltrim(trim("Name"), '#')) IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY order_key ORDER BY filename DESC) = 1;
COPY (
SELECT order_key, trim("Name") AS name, email_of("Email") AS email,
  coalesce(phone_of("Phone"), phone_of("Billing Phone"), phone_of("Shipping Phone")) AS phone,
  lower(txt("Financial Status")) AS financial_status, lower(txt("Fulfillment Status")) AS fulfillment_status,
  CASE lower(txt("Accepts Marketing")) WHEN 'yes' THEN true WHEN 'no' THEN false END AS accepts_marketing,
  txt("Currency") AS currency, decimal_of("Subtotal") AS subtotal, decimal_of("Shipping") AS shipping,
  decimal_of("Taxes") AS taxes, decimal_of("Total") AS total, txt("Discount Code") AS discount_code,
  decimal_of("Discount Amount") AS discount_amount, timezone('UTC', created_tz) AS created_at,
  timezone('UTC', try_strptime(txt("Paid at"), '%Y-%m-%d %H:%M:%S %z')) AS paid_at,
  timezone('UTC', try_strptime(txt("Cancelled at"), '%Y-%m-%d %H:%M:%S %z')) AS cancelled_at,
  decimal_of("Refunded Amount") AS refunded_amount, txt("Id") AS shopify_id, txt("Tags") AS tags,
  txt("Source") AS source_name, filename AS _source_file, CAST(timezone('Europe/Moscow', created_tz) AS DATE) AS dt
FROM firsts WHERE created_tz IS NOT NULL
) TO '{out}/orders' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt));
COPY (
SELECT f.order_key, row_number() OVER (PARTITION BY s.filename, s."Name" ORDER BY s.rowid) AS line_number,
  txt(s."Lineitem sku") AS sku, txt(s."Lineitem name") AS name, try_cast(trim(s."Lineitem quantity") AS BIGINT) AS quantity,
  decimal_of(s."Lineitem price") AS price, timezone('UTC', f.created_tz) AS created_at, s.filename AS _source_file,
  CAST(timezone('Europe/Moscow', f.created_tz) AS DATE) AS dt
FROM s JOIN firsts f ON s.filename = f.filename AND s."Name" = f."Name"
WHERE f.created_tz IS NOT NULL
) TO '{out}/order_items' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt));
SELECT 1"""


# Per CSV/TSV export: DuckDB's script writing crmflow's output, and what the row's note
# says it does and leaves out.
SAME_OUTPUT = {
    "metrica": (duck_metrica_same_output, "typed, arrays, UTC, dedup (latest file wins), a folder per date; "
                "no line numbers, cut-off or quarantine"),
    "shopify": (duck_shopify_same_output, "orders and items typed and normalised, UTC, each order from the "
                "latest file, a folder per date and table; no line numbers, cut-off or quarantine"),
    "messages": (duck_messages_same_output, "email or E.164 phone, lower-cased codes, UTC, a folder per date; "
                 "no line numbers, cut-off or quarantine"),
}


def size_mb(paths):
    return sum(p.stat().st_size for p in paths) / 1e6


def last_run_record(lake):
    """The run record of the latest run on this lake (`<lake>/_runs/*.json`)."""
    records = [json.loads(p.read_text()) for p in (lake / "_runs").glob("*.json")]
    return max(records, key=lambda r: r["started_at"])


def duck_attribution(marts, out):
    """DuckDB's heuristic attribution: int_conversion_touches, int_attribution_paths and
    attribution_credits from crmflow's marts, and their data tests."""
    attribution_checks = checks([
        # int_attribution_paths' three tests (DuckDB's paths have no empty path)
        "SELECT * FROM paths WHERE conversion_id IS NULL OR n IS NULL OR decay_weight IS NULL OR last_nd IS NULL",
        "SELECT * FROM paths WHERE NOT coalesce((touch_id IS NULL) = (n = 0) AND (pos IS NULL) = (n = 0), false)",
        "SELECT conversion_id FROM paths GROUP BY conversion_id "
        "HAVING sum(CASE WHEN pos = last_nd THEN 1 ELSE 0 END) <> 1 OR abs(sum(decay_weight) - 1) > 1e-9",
        # attribution_credits' three tests
        "SELECT * FROM credits WHERE conversion_id IS NULL OR model IS NULL OR channel IS NULL "
        "OR credit IS NULL OR value_credit IS NULL",
        "SELECT conversion_id FROM credits GROUP BY conversion_id HAVING "
        + " OR ".join(f"abs(coalesce(sum(credit) FILTER (WHERE model = '{m}'), 0) - 1) > 1e-6" for m in MODELS)
        + " OR count(*) FILTER (WHERE model NOT IN (" + ", ".join(f"'{m}'" for m in MODELS) + ")) > 0",
        "SELECT * FROM credits WHERE NOT coalesce(credit >= 0 AND credit <= 1.000000001, false)"])
    model_rows = ", ".join(f"('{m}')" for m in MODELS)
    # The spec's attribution_credits (spec/marts.md): the same twelve columns and
    # six models as crmflow's. Unordered: crmflow writes its table in (conversion,
    # position) order, which DuckDB would have to sort 55M rows for at 1M.
    return f"""
CREATE TABLE ct AS SELECT c.conversion_id, c.conversion_type, c.customer_id, c.converted_at, c.value,
  t.touch_id, t.touch_at, t.channel, t.campaign,
  row_number() OVER (PARTITION BY c.conversion_id ORDER BY t.touch_at, t.touch_id) AS pos,
  count(*) OVER (PARTITION BY c.conversion_id) AS n
FROM read_parquet('{marts}/conversions/*.parquet') c
JOIN read_parquet('{marts}/touchpoints/*.parquet') t
  ON t.customer_id = c.customer_id AND t.touch_at <= c.converted_at
 AND t.touch_at >= c.converted_at - INTERVAL 30 DAY
WHERE c.conversion_type IN ('order', 'lead');
CREATE TABLE paths AS SELECT *,
  pow(2, -epoch(converted_at - touch_at) / 86400.0 / 7) / sum(pow(2, -epoch(converted_at - touch_at) / 86400.0 / 7))
    OVER (PARTITION BY conversion_id) AS decay_weight,
  coalesce(max(CASE WHEN channel NOT IN ('Direct', 'Internal') THEN pos END) OVER (PARTITION BY conversion_id), n) AS last_nd
FROM ct;
CREATE TABLE credits AS
SELECT conversion_id, conversion_type, customer_id, converted_at, m.model, touch_id, pos AS position, n AS path_length,
  channel, campaign, credit, credit * value AS value_credit
FROM (SELECT *, CASE m.model
    WHEN 'first_touch' THEN CASE WHEN pos = 1 THEN 1.0 ELSE 0.0 END
    WHEN 'last_touch' THEN CASE WHEN pos = n THEN 1.0 ELSE 0.0 END
    WHEN 'last_non_direct' THEN CASE WHEN pos = last_nd THEN 1.0 ELSE 0.0 END
    WHEN 'linear' THEN 1.0 / n
    WHEN 'position_based' THEN CASE WHEN n = 1 THEN 1.0 WHEN n = 2 THEN 0.5 WHEN pos = 1 OR pos = n THEN 0.4 ELSE 0.2 / (n - 2) END
    ELSE decay_weight END AS credit
  FROM paths CROSS JOIN (VALUES {model_rows}) m(model)) m;
COPY credits TO '{out}/credits.parquet' (FORMAT parquet);
{attribution_checks}SELECT count(*) FROM credits"""


def duck_cohort_rfm(marts, out):
    """DuckDB's int_purchases, cohort_retention and rfm from crmflow's marts, and their
    data tests."""
    cohort_checks = checks([
        # int_purchases, cohort_retention and rfm's seven tests
        "SELECT customer_id, k FROM p GROUP BY customer_id, k HAVING count(*) > 1",
        "SELECT cohort, month_offset FROM cohorts GROUP BY cohort, month_offset HAVING count(*) > 1",
        "SELECT * FROM cohorts c JOIN (SELECT m, count(*) AS size FROM p WHERE k = 1 GROUP BY m) s ON s.m = c.cohort "
        "WHERE (c.month_offset = 0 AND c.customers <> s.size) OR c.customers > s.size",
        "SELECT * FROM cohorts WHERE NOT coalesce(customers >= 0, false)",
        "SELECT customer_id FROM rfm GROUP BY customer_id HAVING count(*) > 1",
        "SELECT * FROM rfm WHERE NOT coalesce(r_score BETWEEN 1 AND 5 AND f_score BETWEEN 1 AND 5 "
        "AND m_score BETWEEN 1 AND 5, false)",
        f"SELECT * FROM rfm WHERE customer_id IS NOT NULL AND customer_id NOT IN "
        f"(SELECT customer_id FROM read_parquet('{marts}/customers/*.parquet') WHERE customer_id IS NOT NULL)"])
    return f"""
CREATE TABLE p AS SELECT customer_id, converted_at, value,
  row_number() OVER (PARTITION BY customer_id ORDER BY converted_at, conversion_id) AS k,
  date_trunc('month', converted_at AT TIME ZONE 'Europe/Moscow') AS m
FROM read_parquet('{marts}/conversions/*.parquet') WHERE conversion_type = 'order' AND customer_id IS NOT NULL;
CREATE TABLE cohorts AS SELECT f.m AS cohort, datediff('month', f.m, p.m) AS month_offset, count(DISTINCT p.customer_id) AS customers
FROM p JOIN (SELECT customer_id, m FROM p WHERE k = 1) f USING (customer_id) GROUP BY 1, 2;
CREATE TABLE rfm AS SELECT customer_id, r, f, mon,
  ntile(5) OVER (ORDER BY r DESC, customer_id) AS r_score, ntile(5) OVER (ORDER BY f, customer_id) AS f_score,
  ntile(5) OVER (ORDER BY mon, customer_id) AS m_score FROM
  (SELECT customer_id, datediff('day', max(converted_at), TIMESTAMP '{AS_OF} 23:59:59') AS r, count(*) AS f, sum(value) AS mon FROM p GROUP BY 1);
COPY cohorts TO '{out}/cohorts.parquet' (FORMAT parquet);
COPY rfm TO '{out}/rfm.parquet' (FORMAT parquet);
{cohort_checks}SELECT count(*) FROM rfm"""


def bench_scale(crmflow, customers, work, threads, repeat):
    rows = []
    data, lake = work / f"data-{customers}", work / f"lake-{customers}"
    if not (data / "sample.json").exists():
        timed([crmflow, "generate", "--out", str(data), "--customers", str(customers),
               "--seed", "7", "--as-of", AS_OF, "--days", "365"])
    shutil.rmtree(lake, ignore_errors=True)
    job = work / f"job-{customers}.toml"
    job_file(data, lake, job)
    env = dict(os.environ, CRMFLOW_LOG="warn")

    def stage(name):
        s, mb, _ = timed([crmflow, "run", str(job), "--as-of", AS_OF, "--stage", name], env=env)
        last = last_run_record(lake)
        n = sum(st["rows"] for st in last["stages"])
        return s, mb, n

    inputs = sorted(p for p in data.rglob("*") if p.is_file() and p.name != "sample.json")
    s, mb, n = stage("ingest")
    ingest_record = last_run_record(lake)
    mb_in = size_mb(inputs)
    # DuckDB: the CSV/TSV exports to Parquet (the biggest ones: visits, orders, messages).
    out = work / f"duck-{customers}"
    shutil.rmtree(out, ignore_errors=True); out.mkdir()
    csvs = {
        "metrica": (sorted((data / "metrica").glob("*.tsv")), "delim='\\t', quote='', escape='', ignore_errors=true, strict_mode=false"),
        "shopify": (sorted((data / "shopify").glob("*.csv")), "delim=',', ignore_errors=true, strict_mode=false"),
        "messages": (sorted((data / "messages").glob("*.csv")), "delim=',', ignore_errors=true, strict_mode=false"),
    }
    def duck_csv_sql(name):
        files, opts = csvs[name]
        return (f"COPY (SELECT * FROM read_csv({[str(p) for p in files]}, {opts}, header=true, all_varchar=false)) "
                f"TO '{out}/{name}.parquet' (FORMAT parquet, COMPRESSION zstd);\nSELECT 1")

    def duck_csv():
        # One DuckDB process per export; DuckDB's time for the three is their sum.
        latest = [duck(duck_csv_sql(name), threads)[:2] for name in csvs]
        return sum(s for s, _ in latest), max(mb for _, mb in latest)

    csv_mb = size_mb([p for files, _ in csvs.values() for p in files])
    csv_job = work / f"job-{customers}-csv.toml"
    sources_job(job, lake, csv_job, ("metrica", "shopify", "messages"), "csv")

    def crmflow_csv():
        shutil.rmtree(str(lake) + "-csv", ignore_errors=True)
        return timed([crmflow, "run", str(csv_job), "--as-of", AS_OF, "--stage", "ingest"], env=env)[:2]

    csv_row = interleaved(crmflow_csv, duck_csv, repeat)
    # Issue 3's throughput per source: each CSV/TSV export alone, crmflow (a job with that
    # source only) interleaved with DuckDB's read_csv -> COPY TO and with DuckDB writing
    # the same output as crmflow (SAME_OUTPUT), each on every core.
    alone_rows, same_rows = [], []
    for name, (files, _) in csvs.items():
        source_job = work / f"job-{customers}-{name}.toml"
        sources_job(job, lake, source_job, (name,), name)

        def crmflow_alone(name=name, source_job=source_job):
            shutil.rmtree(f"{lake}-{name}", ignore_errors=True)
            return timed([crmflow, "run", str(source_job), "--as-of", AS_OF, "--stage", "ingest"], env=env)[:2]

        def duck_same(name=name, files=files):
            folder = out / f"{name}-same"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            return duck(SAME_OUTPUT[name][0](files, folder), threads)[:2]

        alone, same = interleaved_with(
            crmflow_alone, [lambda name=name: duck(duck_csv_sql(name), threads)[:2], duck_same], repeat)
        read = last_run_record(Path(f"{lake}-{name}"))["sources"][0]["rows_read"]
        source_mb = size_mb(files)
        alone_rows.append(dict(stage=f"ingest {name} alone", **alone, rows=read, input_mb=round(source_mb, 1),
                               mb_per_s=round(source_mb / alone["crmflow_s"], 1),
                               rows_per_s=round(read / alone["crmflow_s"]),
                               note=pairs_note(alone) + "MB/s and rows/s: crmflow's; DuckDB: read_csv -> COPY TO "
                               "Parquet, no normalisation, dedup, cut-off or quarantine"))
        same_rows.append(dict(stage=f"ingest {name}, DuckDB writing the same output", **same,
                              input_mb=round(source_mb, 1), mb_per_s=round(source_mb / same["crmflow_s"], 1),
                              note=pairs_note(same) + "DuckDB: " + SAME_OUTPUT[name][1]))
    # The three sources' sums, each side alone on every core: the like-for-like counterpart
    # of the CSV/TSV row.
    same_total = dict(crmflow_s=round(sum(r["crmflow_s"] for r in same_rows), 2),
                      crmflow_rss_mb=max(r["crmflow_rss_mb"] for r in same_rows),
                      duckdb_s=round(sum(r["duckdb_s"] for r in same_rows), 2),
                      duckdb_rss_mb=max(r["duckdb_rss_mb"] for r in same_rows))
    rows.append(dict(stage="ingest (all 9 sources)", crmflow_s=s, crmflow_rss_mb=mb, rows=n,
                     input_mb=round(mb_in, 1), mb_per_s=round(mb_in / s, 1), rows_per_s=round(n / s),
                     duckdb_s=None, duckdb_rss_mb=None, note="normalise, dedup, cut-off, quarantine, Parquet"))
    rows.append(dict(stage="ingest CSV/TSV (Metrica, Shopify, messages)", **csv_row,
                     input_mb=round(csv_mb, 1), mb_per_s=round(csv_mb / csv_row["crmflow_s"], 1),
                     note=pairs_note(csv_row) + "DuckDB: read_csv -> COPY TO Parquet, no normalisation, dedup, "
                     "cut-off or quarantine"))
    rows.append(dict(stage="ingest CSV/TSV, DuckDB writing the same output", **same_total,
                     input_mb=round(csv_mb, 1), mb_per_s=round(csv_mb / same_total["crmflow_s"], 1),
                     note="sums of the medians of the three rows below (each source alone, each side on "
                     "every core)"))
    rows.extend(same_rows)
    rows.extend(alone_rows)
    # Each source within the whole ingest (sources run two at a time, sharing the cores):
    # not comparable with a run alone, so without a DuckDB figure.
    for src in ingest_record["sources"]:
        if src.get("seconds", 0) <= 0 or src["bytes"] < 1 << 20:
            continue
        src_mb = src["bytes"] / 2**20
        rows.append(dict(stage=f"ingest source {src['source']}", crmflow_s=round(src["seconds"], 2),
                         crmflow_rss_mb=None, rows=src["rows_read"], input_mb=round(src_mb, 1),
                         mb_per_s=round(src_mb / src["seconds"], 1), rows_per_s=round(src["rows_read"] / src["seconds"]),
                         note="within the whole ingest, two sources at a time"))

    s, mb, n = stage("models")
    rows.append(dict(stage="models (all 35)", crmflow_s=s, crmflow_rss_mb=mb, rows=n, rows_per_s=round(n / s)))
    # The heuristic models, cohorts and RFM alone in crmflow, then in DuckDB.
    marts = lake / "marts"
    for name, select, duck_sql in [
            ("attribution heuristics", "int_conversion_touches,int_attribution_paths,attribution_credits",
             duck_attribution),
            ("cohort_retention + rfm", "int_purchases,cohort_retention,rfm", duck_cohort_rfm)]:
        sql = duck_sql(marts, out)
        compared = interleaved(
            lambda: timed([crmflow, "models", "--job", str(job), "run", "--select", select, "--as-of", AS_OF],
                          env=env)[:2],
            lambda: duck(sql, threads)[:2], repeat)
        rows.append(dict(stage=name, **compared,
                         note=pairs_note(compared) + "both run the models' data tests (DuckDB: the same conditions as "
                         "queries after its tables); crmflow's time includes process start and engine build"))
    # Issue 5's figure: all seven attribution models (the heuristics and Markov's paths,
    # chain and channel table) from conversions and touchpoints, in one process.
    seven = ("int_conversion_touches,int_attribution_paths,attribution_credits,"
             "attribution_paths,int_attribution_markov,attribution_by_channel")
    cs, cmb, _ = timed([crmflow, "models", "--job", str(job), "run", "--select", seven, "--as-of", AS_OF], env=env)
    rows.append(dict(stage="attribution, all 7 models", crmflow_s=cs, crmflow_rss_mb=cmb,
                     note="paths, 6 heuristic models' credits, Markov paths and exact chain, by channel"))
    s, mb, n = stage("publish")
    rows.append(dict(stage="publish (9 feeds)", crmflow_s=s, crmflow_rss_mb=mb, rows=n))
    total = sum(r["crmflow_s"] for r in rows if r["stage"].startswith(("ingest (", "models (", "publish (9")))
    peak = max(r["crmflow_rss_mb"] or 0 for r in rows)
    rows.append(dict(stage="whole nightly job", crmflow_s=total, crmflow_rss_mb=peak,
                     note="the stages' own processes above: the sum of their times, the largest peak"))
    # The job as a scheduler runs it: every stage in one process, into a fresh lake. Its
    # peak RSS is the one the 4 GB target bounds.
    shutil.rmtree(lake, ignore_errors=True)
    s, mb, _ = timed([crmflow, "run", str(job), "--as-of", AS_OF], env=env)
    rows.append(dict(stage="whole nightly job, one process", crmflow_s=s, crmflow_rss_mb=mb,
                     note="`crmflow run <job>`: ingest, models and publish in one process, into a fresh lake"))
    rows.extend(publish_destinations(crmflow, work, customers, job, lake, env))
    for r in rows:
        if r.get("crmflow_s") and r.get("duckdb_s"):
            r["ratio"] = round(r["crmflow_s"] / r["duckdb_s"], 2)
    return dict(customers=customers, input_mb=round(mb_in, 1), stages=rows)


BENCH_SEGMENT = "bench_feed"


def create_bucket(endpoint, bucket):
    """A bucket on moto's server (it accepts unsigned requests)."""
    import http.client, urllib.parse
    url = urllib.parse.urlparse(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    conn.request("PUT", f"/{bucket}")
    status = conn.getresponse().status
    if status != 200:
        sys.exit(f"creating bucket {bucket} on {endpoint}: HTTP {status}")


def publish_destinations(crmflow, work, customers, job, lake, env):
    """Issue 7's figure: one segment of up to 1M customers (every customer of the lake,
    on the email and ads channels: suppression, addresses, SHA-256 digests, a diff) published
    to each kind of destination, each as its own `crmflow publish` process. The lake's
    publication history of the segment is cleared before each, so each is a first publish."""
    sql = work / "sql-bench"
    shutil.rmtree(sql, ignore_errors=True)
    shutil.copytree(REPO / "sql", sql)
    (sql / "segments" / f"{BENCH_SEGMENT}.sql").write_text(
        "-- Benchmark segment: up to 1M customers, whatever their consent.\n"
        "select customer_id from customers order by customer_id limit 1000000\n")
    (sql / "segments" / f"{BENCH_SEGMENT}.toml").write_text(textwrap.dedent("""\
        description = "Benchmark segment (benches/bench.py): up to 1M customers."
        order_by = ["customer_id"]

        [publish]
        channels = ["email", "ads"]
        max_removed_share = 1.0
        """))
    base = job.read_text().replace(f'"{REPO / "sql"}"', f'"{sql}"')
    bench_job = work / f"job-{customers}-publish.toml"
    bench_job.write_text(base)
    timed([crmflow, "models", "--job", str(bench_job), "run", "--select", BENCH_SEGMENT, "--as-of", AS_OF], env=env)
    endpoint, pg = os.environ.get("CRMFLOW_TEST_S3_ENDPOINT"), os.environ.get("CRMFLOW_TEST_PG")
    destinations = [("local folder", f'kind = "files"\nlocation = "{work / f"feeds-{customers}"}"')]
    if endpoint:
        bucket = f"crmflow-bench-{customers}"
        create_bucket(endpoint, bucket)
        destinations.append(("S3 (moto on loopback)", f'kind = "files"\nlocation = "s3://{bucket}/feeds"\n'
            f'storage_options = {{ aws_endpoint = "{endpoint}", aws_allow_http = "true", aws_region = "us-east-1", '
            f'aws_access_key_id = "bench", aws_secret_access_key = "bench" }}'))
    if pg:
        destinations.append(("PostgreSQL (binary COPY, swap)",
                             f'kind = "postgres"\nurl_env = "CRMFLOW_TEST_PG"\nschema = "crmflow_bench_{customers}"'))
    destinations.append(("Delta Lake", f'kind = "delta"\nlocation = "{work / f"delta-{customers}"}"'))
    rows = []
    for name, table in destinations:
        shutil.rmtree(work / f"feeds-{customers}", ignore_errors=True)
        shutil.rmtree(work / f"delta-{customers}", ignore_errors=True)
        shutil.rmtree(lake / "publish" / BENCH_SEGMENT, ignore_errors=True)
        dest_job = work / f"job-{customers}-publish-dest.toml"
        dest_job.write_text(base + f'\n[[destinations]]\nname = "bench"\n{table}\n')
        s, mb, _ = timed([crmflow, "publish", str(dest_job), "--as-of", AS_OF, "--segment", BENCH_SEGMENT], env=env)
        last = last_run_record(lake)
        feeds = [p for p in last.get("publications", []) if p["segment"] == BENCH_SEGMENT]
        if not feeds or any(p["status"] != "published" for p in feeds):
            sys.exit(f"publish to {name}: {feeds}")
        candidates = max(p["candidates"] for p in feeds)
        published = sum(p["rows"] for p in feeds)
        rows.append(dict(stage=f"publish {candidates:,}-row segment: {name}", crmflow_s=s, crmflow_rss_mb=mb,
                         rows=published, rows_per_s=round(candidates / s),
                         note="email and ads feeds; rows = contacts published in both"))
    return rows


def markdown(result):
    lines = [f"# crmflow benchmark {result['date']}", "",
             f"Machine: {result['machine']['cores']} cores, {result['machine']['memory_gib']} GiB, "
             f"{result['machine']['platform']}; crmflow {result['versions']['crmflow']}, "
             f"DataFusion {result['versions']['datafusion']}, DuckDB {result['versions']['duckdb']}; "
             f"DuckDB threads = {result['duckdb_threads']}. Stages with a DuckDB time: medians of "
             f"{result.get('repeat', 1)} interleaved runs of each side.", ""]
    for scale in result["scales"]:
        lines += [f"## {scale['customers']:,} customers ({scale['input_mb']} MB of exports)", "",
                  "| stage | crmflow s | crmflow peak RSS MB | DuckDB s | DuckDB peak RSS MB | ratio | rows | rows/s | MB/s | note |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        f = lambda v, d=2: "" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))
        for r in scale["stages"]:
            lines.append("| " + " | ".join([r["stage"], f(r.get("crmflow_s")), f(r.get("crmflow_rss_mb"), 0),
                         f(r.get("duckdb_s")), f(r.get("duckdb_rss_mb"), 0), f(r.get("ratio")),
                         f(r.get("rows")), f(r.get("rows_per_s")), f(r.get("mb_per_s"), 1), r.get("note", "")]) + " |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crmflow", required=True)
    ap.add_argument("--scales", default="10000,100000")
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/crmflow-bench"))
    ap.add_argument("--out", default=str(REPO / "bench/results"))
    ap.add_argument("--repeat", type=int, default=3,
                    help="interleaved crmflow/DuckDB runs of each compared stage (medians reported)")
    a = ap.parse_args()
    import duckdb
    threads = os.cpu_count() or 2
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    version = subprocess.run([a.crmflow, "--version"], capture_output=True, text=True).stdout.split()[-1]
    mem = int(open("/proc/meminfo").read().split()[1]) / 2**20
    result = dict(date=datetime.date.today().isoformat(), duckdb_threads=threads, repeat=max(1, a.repeat),
                  machine=dict(cores=os.cpu_count(), memory_gib=round(mem, 1), platform=platform.platform()),
                  versions=dict(crmflow=version, datafusion="55.2.0", duckdb=duckdb.__version__),
                  scales=[])
    for n in [int(s) for s in a.scales.split(",")]:
        print(f"== {n} customers", flush=True)
        result["scales"].append(bench_scale(a.crmflow, n, work, threads, max(1, a.repeat)))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    # Runs of the same day at other scales are kept: one report per day.
    previous = out / f"{result['date']}.json"
    if previous.exists():
        done = {s["customers"] for s in result["scales"]}
        kept = [s for s in json.loads(previous.read_text())["scales"] if s["customers"] not in done]
        result["scales"] = sorted(kept + result["scales"], key=lambda s: s["customers"])
    (out / f"{result['date']}.json").write_text(json.dumps(result, indent=2))
    md = markdown(result)
    (out / f"{result['date']}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
