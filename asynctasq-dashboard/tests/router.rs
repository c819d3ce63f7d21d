//! The dashboard's routes over the in-memory driver, without a browser or a socket: every page
//! renders, every action does what it says, and the access rules hold.

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::driver::{Driver, TaskState};
use asynctasq_core::{Client, MemoryDriver, TaskError, TaskId, task};
use asynctasq_dashboard::{Access, Dashboard, Role};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

/// Echoes its text.
#[task(queue = "mail")]
async fn send_mail(to: String) -> Result<(), TaskError> {
    let _ = to;
    Ok(())
}

/// Resizes an image.
#[task(queue = "images")]
async fn resize(width: u32) -> Result<(), TaskError> {
    let _ = width;
    Ok(())
}

const OPERATOR: &str = "operator-token-0123456789";
const VIEWER: &str = "viewer-token-0123456789";

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(app: &Router, method: &str, path: &str, headers: &[(&str, &str)], form: &str) -> Answer {
    let mut request = Request::builder().method(method).uri(path).header("host", "127.0.0.1:8080");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if method == "POST" {
        request = request.header("content-type", "application/x-www-form-urlencoded");
    }
    let response = app.clone().oneshot(request.body(Body::from(form.to_owned())).expect("request")).await.expect("answer");
    let status = response.status();
    let headers = response.headers().clone();
    let body = String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf-8");
    Answer { status, headers, body }
}

/// A browser's form post from the dashboard's own page.
const SAME_ORIGIN: &[(&str, &str)] = &[("sec-fetch-site", "same-origin")];

async fn get(app: &Router, path: &str) -> Answer {
    call(app, "GET", path, &[], "").await
}

async fn post(app: &Router, path: &str, form: &str) -> Answer {
    call(app, "POST", path, SAME_ORIGIN, form).await
}

/// A memory backend with mail tasks ready and `dead` of them dead with `error`.
async fn backend(ready: usize, dead: usize, error: &str) -> (Arc<MemoryDriver>, Vec<TaskId>) {
    let driver = Arc::new(MemoryDriver::new());
    let client = Client::new(driver.clone());
    let mut ids = Vec::new();
    for i in 0..(ready + dead) {
        ids.push(client.dispatch(SendMail { to: format!("user{i}@example.com") }).await.expect("dispatch"));
    }
    if dead > 0 {
        let deliveries = driver.dequeue("mail", dead).await.expect("dequeue");
        for d in deliveries {
            driver.dead_letter(&d.lease, error, Duration::from_secs(3600)).await.expect("dead letter");
        }
    }
    (driver, ids)
}

fn dashboard(driver: Arc<MemoryDriver>) -> Router {
    Dashboard::new(driver, "memory").router()
}

async fn state_of(driver: &MemoryDriver, id: TaskId) -> Option<TaskState> {
    driver.find(id).await.expect("find").map(|r| r.state)
}

#[tokio::test]
async fn every_page_renders_with_the_security_headers() {
    let (driver, ids) = backend(3, 2, "boom").await;
    let app = dashboard(driver);
    let dead = ids[0];
    for path in [
        "/".to_owned(),
        "/fragments/queues".into(),
        "/queues/mail".into(),
        "/queues/mail?state=dead".into(),
        "/queues/mail?state=scheduled&page=1".into(),
        "/queues/mail/flush?state=ready".into(),
        format!("/tasks/{dead}"),
        "/dead".into(),
        "/dead?queue=mail".into(),
        "/dead?queue=mail&task=send&error=bo".into(),
        "/dead/confirm?queue=mail&action=delete".into(),
        "/dead/confirm?queue=mail&error=bo&action=retry".into(),
        "/workers".into(),
        "/schedules".into(),
        "/assets/style.css".into(),
        "/assets/htmx-2.0.4.min.js".into(),
    ] {
        let a = get(&app, &path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        let csp = a.headers.get("content-security-policy").expect("a CSP").to_str().expect("ascii");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(a.headers.get("x-frame-options").map(|v| v.to_str().expect("ascii")), Some("DENY"), "{path}");
    }
    let overview = get(&app, "/").await.body;
    assert!(overview.contains(r#"href="/queues/mail""#) && overview.contains("integrity=\"sha384-"), "{overview}");
    let dead_page = get(&app, "/dead?queue=mail").await.body;
    assert!(dead_page.contains(&dead.to_string()) && dead_page.contains("boom"), "{dead_page}");
}

#[tokio::test]
async fn a_task_is_found_by_id_and_an_unknown_id_says_so() {
    let (driver, ids) = backend(1, 0, "").await;
    let app = dashboard(driver);
    let found = get(&app, &format!("/tasks?id={}", ids[0])).await;
    assert_eq!(found.status, StatusCode::SEE_OTHER);
    assert_eq!(found.headers.get("location").expect("location").to_str().expect("ascii"), format!("/tasks/{}", ids[0]));
    let page = get(&app, &format!("/tasks/{}", ids[0])).await;
    assert!(page.body.contains("user0@example.com") && page.body.contains("send_mail"), "{}", page.body);
    let unknown = get(&app, &format!("/tasks/{}", TaskId::new())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/tasks?id=not-an-id").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pause_resume_retry_cancel_delete_and_flush_do_what_they_say() {
    let (driver, ids) = backend(3, 3, "boom").await;
    let app = dashboard(driver.clone());
    // The dead ones are the first three (dequeued first).
    let (dead_a, dead_b, dead_c, ready_a, ready_b) = (ids[0], ids[1], ids[2], ids[3], ids[4]);

    assert_eq!(post(&app, "/queues/mail/pause", "").await.status, StatusCode::SEE_OTHER);
    assert_eq!(driver.paused().await.expect("paused"), vec!["mail".to_owned()]);
    assert!(get(&app, "/queues/mail").await.body.contains("Resume"));
    assert_eq!(post(&app, "/queues/mail/resume", "").await.status, StatusCode::SEE_OTHER);
    assert!(driver.paused().await.expect("paused").is_empty());

    assert_eq!(post(&app, &format!("/tasks/{dead_a}/retry"), "").await.status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&driver, dead_a).await, Some(TaskState::Ready));
    assert_eq!(post(&app, &format!("/tasks/{ready_a}/retry"), "").await.status, StatusCode::CONFLICT, "only a dead task is retried");

    assert_eq!(post(&app, &format!("/tasks/{ready_a}/cancel"), "").await.status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&driver, ready_a).await, Some(TaskState::Cancelled));

    assert_eq!(post(&app, &format!("/tasks/{dead_b}/delete"), "").await.status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&driver, dead_b).await, None);

    let selected = post(&app, "/dead/retry", &format!("queue=mail&scope=selected&id={dead_c}")).await;
    assert_eq!(selected.status, StatusCode::SEE_OTHER, "{}", selected.body);
    assert_eq!(state_of(&driver, dead_c).await, Some(TaskState::Ready));

    let flush = post(&app, "/queues/mail/flush", "state=ready&counted=4").await;
    assert_eq!(flush.status, StatusCode::SEE_OTHER, "{}", flush.body);
    assert_eq!(state_of(&driver, ready_b).await, None);
    assert_eq!(driver.stats("mail").await.expect("stats").ready, 0);
}

#[tokio::test]
async fn retrying_all_dead_tasks_a_filter_matches_leaves_the_others_dead() {
    let (driver, _) = backend(0, 30, "smtp timeout").await;
    let client = Client::new(driver.clone());
    let other = client.dispatch(SendMail { to: "x".into() }).await.expect("dispatch");
    let d = driver.dequeue("mail", 1).await.expect("dequeue").remove(0);
    driver.dead_letter(&d.lease, "invalid address", Duration::from_secs(3600)).await.expect("dead");
    let app = dashboard(driver.clone());

    let filtered = get(&app, "/dead?queue=mail&error=TIMEOUT").await.body;
    assert!(!filtered.contains(&other.to_string()), "the filter is case-insensitive and keeps only matches");

    let answer = post(&app, "/dead/retry", "queue=mail&scope=all&error=timeout").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let job = answer.headers.get("location").expect("location").to_str().expect("ascii").to_owned();
    assert!(job.starts_with("/jobs/"), "{job}");
    let mut page = String::new();
    for _ in 0..100 {
        page = get(&app, &job).await.body;
        if page.contains("Done.") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(page.contains("30 done"), "{page}");
    let stats = driver.stats("mail").await.expect("stats");
    assert_eq!((stats.ready, stats.dead), (30, 1));
    assert_eq!(state_of(&driver, other).await, Some(TaskState::Dead));
}

#[tokio::test]
async fn paging_the_dead_letters_follows_the_cursor_past_the_first_page() {
    let (driver, ids) = backend(0, 120, "boom").await;
    let app = dashboard(driver);
    let (mut path, mut seen, mut pages) = (Some("/dead?queue=mail".to_owned()), Vec::new(), 0);
    while let Some(p) = path.take() {
        let body = get(&app, &p).await.body;
        pages += 1;
        seen.extend(ids.iter().filter(|id| body.contains(&format!("href=\"/tasks/{id}\""))).copied());
        // The Next link carries the cursor (HTML-escaped `&` in the attribute).
        path = body.find("\">Next").map(|end| {
            let start = body[..end].rfind("href=\"").expect("the Next link's href") + "href=\"".len();
            body[start..end].replace("&amp;", "&")
        });
        assert!(pages <= 3, "three pages of 50, 50 and 20: {p}");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every dead task once, oldest first, across the pages");
}

#[tokio::test]
async fn write_actions_need_the_operator_role() {
    let (driver, _) = backend(1, 0, "").await;
    let access = Access::open().token(OPERATOR, Role::Operator).expect("token").token(VIEWER, Role::Viewer).expect("token");
    let app = Dashboard::new(driver.clone(), "memory").access(access).router();

    let anonymous = get(&app, "/").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers.get("www-authenticate").is_some(), "a browser is asked to log in");

    let viewer = format!("Bearer {VIEWER}");
    assert_eq!(call(&app, "GET", "/", &[("authorization", &viewer)], "").await.status, StatusCode::OK);
    let refused = call(&app, "POST", "/queues/mail/pause", &[("authorization", &viewer)], "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(driver.paused().await.expect("paused").is_empty(), "a viewer changed nothing");

    let operator = format!("Bearer {OPERATOR}");
    assert_eq!(call(&app, "POST", "/queues/mail/pause", &[("authorization", &operator)], "").await.status, StatusCode::SEE_OTHER);
    assert_eq!(driver.paused().await.expect("paused"), vec!["mail".to_owned()]);

    let read_only = Dashboard::new(driver.clone(), "memory").access(Access::open().read_only()).router();
    assert_eq!(post(&read_only, "/queues/mail/resume", "").await.status, StatusCode::FORBIDDEN);
    assert_eq!(driver.paused().await.expect("paused"), vec!["mail".to_owned()]);
}

#[tokio::test]
async fn cross_site_post_is_refused() {
    let (driver, _) = backend(1, 0, "").await;
    let app = dashboard(driver.clone());
    for headers in
        [&[("sec-fetch-site", "cross-site")][..], &[("sec-fetch-site", "same-site")][..], &[("origin", "http://evil.example")][..], &[][..]]
    {
        let a = call(&app, "POST", "/queues/mail/pause", headers, "").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    assert!(driver.paused().await.expect("paused").is_empty());
    let same_origin = call(&app, "POST", "/queues/mail/pause", &[("origin", "http://127.0.0.1:8080")], "").await;
    assert_eq!(same_origin.status, StatusCode::SEE_OTHER, "an Origin matching the host is this site");
}

#[tokio::test]
async fn non_loopback_listen_without_auth_is_refused() {
    let open = Access::open();
    assert!(open.check_listen("127.0.0.1:8080".parse().expect("addr")).is_ok());
    assert!(open.check_listen("[::1]:8080".parse().expect("addr")).is_ok());
    let refused = open.check_listen("0.0.0.0:8080".parse().expect("addr")).expect_err("refused");
    assert!(refused.to_string().contains("--auth-token"), "{refused}");
    let guarded = Access::open().basic("admin:correct-horse", Role::Operator).expect("basic");
    assert!(guarded.check_listen("0.0.0.0:8080".parse().expect("addr")).is_ok());
}

#[tokio::test]
async fn script_in_arguments_and_errors_renders_escaped() {
    let driver = Arc::new(MemoryDriver::new());
    let client = Client::new(driver.clone());
    let id = client.dispatch(SendMail { to: "<script>alert('to')</script>".into() }).await.expect("dispatch");
    let d = driver.dequeue("mail", 1).await.expect("dequeue").remove(0);
    driver.dead_letter(&d.lease, "<script>alert('error')</script>", Duration::from_secs(3600)).await.expect("dead");
    let app = dashboard(driver);
    for path in [format!("/tasks/{id}"), "/dead?queue=mail".into(), "/dead?queue=mail&task=%3Cscript%3E&error=%3Cimg%20src%3Dx%3E".into()] {
        let body = get(&app, &path).await.body;
        assert!(!body.contains("<script>alert") && !body.contains("<img src=x>"), "{path}: {body}");
        assert!(body.contains("&lt;script&gt;"), "{path}: the text is there, escaped");
    }
}

#[tokio::test]
async fn the_overview_shows_each_queue_and_marks_the_paused_ones() {
    let (driver, _) = backend(2, 1, "boom").await;
    Client::new(driver.clone()).dispatch(Resize { width: 640 }).await.expect("dispatch");
    driver.set_paused("images", true).await.expect("pause");
    let app = dashboard(driver);
    let fragment = get(&app, "/fragments/queues").await.body;
    assert!(fragment.starts_with("<div id=\"queues\""), "a fragment, not a page: {fragment}");
    assert!(fragment.contains("images") && fragment.contains("paused") && fragment.contains("mail"), "{fragment}");
}

/// Fires at the top of every hour.
#[task(cron = "0 0 * * * *", queue = "hourly")]
async fn hourly_report() -> Result<(), TaskError> {
    Ok(())
}

#[tokio::test]
async fn schedules_show_their_next_fire_and_are_paused_resumed_and_run_now() {
    let driver = Arc::new(MemoryDriver::new());
    // As the CLI does: every `#[task]` linked into the binary, with the schedules they declare.
    let registry = asynctasq_core::Registry::linked().expect("the linked tasks");
    let app = Dashboard::new(driver.clone(), "memory").registry(Arc::new(registry)).router();
    let page = get(&app, "/schedules").await.body;
    assert!(page.contains("hourly_report") && page.contains("0 0 * * * *") && page.contains("hourly"), "{page}");
    assert!(page.contains("<time"), "the next fire is shown: {page}");

    assert_eq!(post(&app, "/schedules/pause", "name=hourly_report").await.status, StatusCode::SEE_OTHER);
    let paused = |driver: Arc<MemoryDriver>| async move {
        driver.schedules().await.expect("schedules").into_iter().find(|s| s.name == "hourly_report").is_some_and(|s| s.paused)
    };
    assert!(paused(driver.clone()).await, "paused in the backend");
    assert!(get(&app, "/schedules").await.body.contains("Resume"));
    assert_eq!(post(&app, "/schedules/resume", "name=hourly_report").await.status, StatusCode::SEE_OTHER);
    assert!(!paused(driver.clone()).await, "resumed");

    let run = post(&app, "/schedules/run", "name=hourly_report").await;
    assert_eq!(run.status, StatusCode::SEE_OTHER, "{}", run.body);
    let to = run.headers.get("location").expect("location").to_str().expect("ascii").to_owned();
    let id: TaskId = to.trim_start_matches("/tasks/").parse().expect("the task's page");
    assert_eq!(state_of(&driver, id).await, Some(TaskState::Ready), "its task dispatched now, to its queue");
    assert_eq!(driver.stats("hourly").await.expect("stats").ready, 1);
    assert_eq!(post(&app, "/schedules/run", "name=nosuch").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_backend_without_a_capability_shows_what_it_can_and_says_why_the_rest_is_absent() {
    use asynctasq_core::Capability::*;
    let lacks = [ExactStats, Totals, TaskLookup, Browse, WorkerRegistry, PauseQueues, Cancel, Results];
    let driver = Arc::new(MemoryDriver::new().lacking(&lacks));
    let client = Client::new(driver.clone());
    let id = client.dispatch(SendMail { to: "a@example.com".into() }).await.expect("dispatch");
    let d = driver.dequeue("mail", 1).await.expect("dequeue").remove(0);
    driver.dead_letter(&d.lease, "boom", Duration::from_secs(3600)).await.expect("dead");
    let app = dashboard(driver.clone());

    let overview = get(&app, "/").await.body;
    assert!(overview.contains("counts approximately") && overview.contains("keeps no succeeded/failed totals"), "{overview}");
    assert!(get(&app, "/workers").await.body.contains("keeps no worker registry"));
    let queue = get(&app, "/queues/mail").await.body;
    assert!(queue.contains("cannot page through them") && queue.contains("cannot pause a queue"), "{queue}");
    let dead = get(&app, "/dead?queue=mail").await;
    assert_eq!(dead.status, StatusCode::OK);
    assert!(dead.body.contains("lists its oldest dead letters only") && dead.body.contains("boom"), "{}", dead.body);
    let task = get(&app, &format!("/tasks/{id}")).await;
    assert_eq!(task.status, StatusCode::NOT_IMPLEMENTED);
    assert!(task.body.contains("cannot look a task up by id"), "{}", task.body);
    assert_eq!(post(&app, "/queues/mail/pause", "").await.status, StatusCode::BAD_REQUEST, "refused, not a silent no-op");
}
