// The community forum (docs/community.md): threads, replies and reports for patients and cadres,
// through the $forum-* operations, which keep the forum apart from everyone's record. Posts show
// the author's pseudonym unless they chose to show their name on that post. Administrators see
// the moderators' queue and hide posts or block their authors here too (role "admin").
import { useEffect, useState } from "preact/hooks";
import { when } from "./format.js";
import { t } from "./strings.js";

const EXT = "http://hearth.local/fhir/StructureDefinition/forum-";
const SYSTEM = "http://hearth.local/fhir/CodeSystem/forum";

function ext(resource, name) {
  const e = (resource.extension || []).find((x) => x.url === EXT + name);
  return e && e[Object.keys(e).find((k) => k.startsWith("value"))];
}

function view(c) {
  return {
    id: c.id,
    thread: c.inResponseTo?.[0]?.reference?.split("/")[1] || c.id,
    topic: c.topic?.text,
    text: c.payload?.[0]?.contentString || "",
    author: ext(c, "author"),
    role: ext(c, "author-role"),
    blocked: ext(c, "author-blocked") === true,
    replies: ext(c, "replies"),
    last: ext(c, "last-activity") || c.sent,
    sent: c.sent,
    hidden: (c.meta?.tag || []).some((g) => g.system === SYSTEM && g.code === "hidden"),
    reason: c.statusReason?.text,
  };
}

function params(bundle) {
  return Object.fromEntries((bundle.parameter || []).map((p) => [p.name, p[Object.keys(p).find((k) => k.startsWith("value"))]]));
}

const text = (name, value) => ({ name, valueString: value });

function Profile({ api, say }) {
  const [profile, setProfile] = useState(null);
  const [pseudonym, setPseudonym] = useState("");
  useEffect(() => {
    api.call("$forum-profile").then((b) => { const p = params(b); setProfile(p); setPseudonym(p.pseudonym); }, say.error);
  }, []);
  if (!profile) return null;
  const save = async (parameter, message) => {
    try {
      const p = params(await api.op("$forum-profile", parameter));
      setProfile(p);
      setPseudonym(p.pseudonym);
      say.ok(message);
    } catch (e) {
      say.error(e);
    }
  };
  return (
    <details class="forum-profile">
      <summary>{t("forumProfile", { name: profile.pseudonym })}</summary>
      {profile.blocked && <p class="alert" role="note">{t("forumBlocked")}</p>}
      <form class="compose" onSubmit={(ev) => { ev.preventDefault(); save([text("pseudonym", pseudonym)], t("forumPseudonymSaved")); }}>
        <label for="forum-pseudonym">{t("forumPseudonym")}</label>
        <input id="forum-pseudonym" type="text" maxLength={30} value={pseudonym} onInput={(e) => setPseudonym(e.currentTarget.value)} />
        <p class="meta">{t("forumPseudonymHelp")}</p>
        <button type="submit">{t("forumSavePseudonym")}</button>
      </form>
      <label class="check">
        <input type="checkbox" checked={profile.notify} disabled={!profile.hasEmail}
          onChange={(e) => save([{ name: "notify", valueBoolean: e.currentTarget.checked }], t(e.currentTarget.checked ? "forumNotifyOn" : "forumNotifyOff"))} />
        <span>{t("forumNotify")}</span>
      </label>
      {!profile.hasEmail && <p class="meta">{t("forumNoEmail")}</p>}
    </details>
  );
}

function ShowName({ value, onChange, id }) {
  return (
    <label class="check" for={id}>
      <input id={id} type="checkbox" checked={value} onChange={(e) => onChange(e.currentTarget.checked)} />
      <span>{t("forumShowName")}</span>
    </label>
  );
}

function Author({ post }) {
  return (
    <p class="meta">
      <span class="author">{post.author}</span>
      {post.role && <span class="badge">{t(`forumRole_${post.role}`)}</span>}
      {post.blocked && <span class="badge warn">{t("forumAuthorBlocked")}</span>}
      {" · "}{when(post.sent)}
    </p>
  );
}

// A reason, then the action: reporting (everyone) and moderating (administrators).
function ReasonForm({ label, button, onSend, onCancel, id }) {
  const [reason, setReason] = useState("");
  return (
    <form class="compose" onSubmit={(ev) => { ev.preventDefault(); if (reason.trim()) onSend(reason.trim()); }}>
      <label for={id}>{label}</label>
      <input id={id} type="text" maxLength={500} value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      <div class="actions">
        <button class="primary" type="submit">{button}</button>
        <button type="button" onClick={onCancel}>{t("forumCancel")}</button>
      </div>
    </form>
  );
}

function Post({ api, say, post, moderator, reload }) {
  const [open, setOpen] = useState(null); // "report" | "hide" | "block"
  const moderate = async (action, reason) => {
    try {
      await api.op("$forum-moderate", [
        text("post", post.id),
        { name: "action", valueCode: action },
        ...(reason ? [text("reason", reason)] : []),
      ]);
      say.ok(t(`forumDone_${action}`));
      setOpen(null);
      reload();
    } catch (e) {
      say.error(e);
    }
  };
  const report = async (reason) => {
    try {
      await api.op("$forum-report", [text("post", post.id), text("reason", reason)]);
      say.ok(t("forumReported"));
      setOpen(null);
    } catch (e) {
      say.error(e);
    }
  };
  return (
    <li class={`post${post.hidden ? " hidden" : ""}`} data-post={post.id}>
      <Author post={post} />
      {post.hidden && <p class="meta warn">{t("forumHiddenBecause", { reason: post.reason })}</p>}
      <p class="text">{post.text}</p>
      <div class="actions">
        <button type="button" onClick={() => setOpen(open === "report" ? null : "report")}>{t("forumReport")}</button>
        {moderator && (post.hidden
          ? <button type="button" onClick={() => moderate("restore")}>{t("forumRestore")}</button>
          : <button type="button" onClick={() => setOpen("hide")}>{t("forumHide")}</button>)}
        {moderator && (post.blocked
          ? <button type="button" onClick={() => moderate("unblock")}>{t("forumUnblock")}</button>
          : <button type="button" onClick={() => setOpen("block")}>{t("forumBlock")}</button>)}
      </div>
      {open === "report" && <ReasonForm id={`report-${post.id}`} label={t("forumReportReason")} button={t("forumSendReport")} onSend={report} onCancel={() => setOpen(null)} />}
      {open === "hide" && <ReasonForm id={`hide-${post.id}`} label={t("forumModerationReason")} button={t("forumConfirmHide")} onSend={(r) => moderate("hide", r)} onCancel={() => setOpen(null)} />}
      {open === "block" && <ReasonForm id={`block-${post.id}`} label={t("forumModerationReason")} button={t("forumConfirmBlock")} onSend={(r) => moderate("block", r)} onCancel={() => setOpen(null)} />}
    </li>
  );
}

function Compose({ api, say, thread, onPosted }) {
  const [topic, setTopic] = useState("");
  const [body, setBody] = useState("");
  const [showName, setShowName] = useState(false);
  const [busy, setBusy] = useState(false);
  const key = thread ? "reply" : "new";
  const send = async (ev) => {
    ev.preventDefault();
    if (busy || !body.trim() || (!thread && !topic.trim())) return;
    setBusy(true);
    try {
      const created = await api.op("$forum-post", [
        thread ? text("thread", thread) : text("topic", topic.trim()),
        text("text", body.trim()),
        { name: "showName", valueBoolean: showName },
      ]);
      setTopic("");
      setBody("");
      setShowName(false);
      say.ok(t(thread ? "forumReplied" : "forumPosted"));
      onPosted(created);
    } catch (e) {
      say.error(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="compose" onSubmit={send}>
      {!thread && (
        <>
          <label for="forum-topic">{t("forumTopic")}</label>
          <input id="forum-topic" type="text" maxLength={200} value={topic} onInput={(e) => setTopic(e.currentTarget.value)} />
        </>
      )}
      <label for={`forum-text-${key}`}>{t(thread ? "forumYourReply" : "forumYourPost")}</label>
      <textarea id={`forum-text-${key}`} rows={4} maxLength={4000} value={body} onInput={(e) => setBody(e.currentTarget.value)} />
      <ShowName id={`forum-show-${key}`} value={showName} onChange={setShowName} />
      <button class="primary" type="submit" disabled={busy}>{t(thread ? "forumReply" : "forumStart")}</button>
    </form>
  );
}

function Thread({ api, say, id, moderator, back }) {
  const [posts, setPosts] = useState(null);
  const load = () =>
    api.call(`$forum-thread?thread=${encodeURIComponent(id)}`).then(
      (b) => setPosts((b.entry || []).map((e) => view(e.resource))),
      (e) => { say.error(e); back(); },
    );
  useEffect(() => { load(); }, [id]);
  if (!posts) return <p class="meta">{t("loading")}</p>;
  const [first] = posts;
  return (
    <>
      <p><button type="button" onClick={back}>{t("forumAllThreads")}</button></p>
      <h2>{first.topic}</h2>
      <ol class="posts">
        {posts.map((p) => <Post key={p.id} api={api} say={say} post={p} moderator={moderator} reload={load} />)}
      </ol>
      <h2>{t("forumWriteReply")}</h2>
      <Compose api={api} say={say} thread={id} onPosted={load} />
    </>
  );
}

function Queue({ api, say, open }) {
  const [items, setItems] = useState(null);
  const load = () =>
    api.call("$forum-reports").then((b) => {
      const entries = b.entry || [];
      const posts = Object.fromEntries(entries.filter((e) => e.search?.mode === "include").map((e) => [e.resource.id, view(e.resource)]));
      setItems(entries.filter((e) => e.search?.mode === "match").map((e) => ({
        id: e.resource.id,
        reason: e.resource.payload?.[0]?.contentString,
        post: posts[e.resource.about?.[0]?.reference?.split("/")[1]],
      })));
    }, say.error);
  useEffect(() => { load(); }, []);
  if (!items) return null;
  return (
    <section aria-labelledby="forum-queue">
      <h2 id="forum-queue">{t("forumQueue")}</h2>
      {items.length === 0 && <p class="meta">{t("forumQueueEmpty")}</p>}
      <ul class="cards reports">
        {items.map((r) => r.post && (
          <li class="card" key={r.id} data-report={r.id}>
            <p><strong>{t("forumReportedFor")}</strong> {r.reason}</p>
            <Author post={r.post} />
            <p class="text">{r.post.text}</p>
            <div class="actions">
              <button type="button" onClick={() => open(r.post.thread)}>{t("forumOpenPost")}</button>
              <button type="button" onClick={async () => {
                try {
                  await api.op("$forum-moderate", [text("post", r.post.id), { name: "action", valueCode: "dismiss" }]);
                  say.ok(t("forumDone_dismiss"));
                  load();
                } catch (e) { say.error(e); }
              }}>{t("forumDismiss")}</button>
            </div>
          </li>
        ))}
      </ul>
    </section>
  );
}

export function ForumScreen({ api, say, role }) {
  const moderator = role === "admin";
  const [threads, setThreads] = useState(null);
  const [open, setOpen] = useState(null);
  const load = () => api.call("$forum-threads").then((b) => setThreads((b.entry || []).map((e) => view(e.resource))), say.error);
  useEffect(() => { if (!open) load(); }, [open]);
  if (open) {
    return (
      <>
        <h1>{t("forum")}</h1>
        <Thread api={api} say={say} id={open} moderator={moderator} back={() => setOpen(null)} />
      </>
    );
  }
  return (
    <>
      <h1>{t("forum")}</h1>
      <p class="disclaimer">{t("forumIntro")}</p>
      <Profile api={api} say={say} />
      {moderator && <Queue api={api} say={say} open={setOpen} />}
      <h2>{t("forumStartThread")}</h2>
      <Compose api={api} say={say} onPosted={(created) => setOpen(created.id)} />
      <h2>{t("forumThreads")}</h2>
      {threads && threads.length === 0 && <p class="meta">{t("forumNoThreads")}</p>}
      <ul class="cards threads">
        {(threads || []).map((th) => (
          <li class={`card${th.hidden ? " hidden" : ""}`} key={th.id} data-thread={th.id}>
            <h3><a href="#/forum" onClick={(ev) => { ev.preventDefault(); setOpen(th.id); }}>{th.topic}</a></h3>
            <Author post={th} />
            <p class="meta">{t("forumReplies", { count: th.replies })} · {t("forumLast", { when: when(th.last) })}</p>
            {th.hidden && <p class="meta warn">{t("forumHiddenBecause", { reason: th.reason })}</p>}
          </li>
        ))}
      </ul>
    </>
  );
}
