// The photo picker: a file input that opens the phone's back camera (capture), a box a photo can
// be dropped on, and a preview. `file` / `onFile` hold the choice; a null file clears the input.
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "./strings.js";

export function PhotoInput({ file, onFile }) {
  const [preview, setPreview] = useState(null);
  const [dragging, setDragging] = useState(false);
  const input = useRef(null);
  useEffect(() => {
    if (!file) {
      setPreview(null);
      if (input.current) input.current.value = "";
      return undefined;
    }
    const url = URL.createObjectURL(file);
    setPreview(url);
    return () => URL.revokeObjectURL(url);
  }, [file]);
  return (
    <>
      <div
        class={`drop${dragging ? " dragging" : ""}`}
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={(e) => {
          e.preventDefault();
          setDragging(false);
          if (e.dataTransfer.files[0]) onFile(e.dataTransfer.files[0]);
        }}
      >
        <label for="photo">{t("choosePhoto")}</label>
        <input
          id="photo"
          ref={input}
          type="file"
          accept="image/jpeg,image/png"
          capture="environment"
          onChange={(e) => e.currentTarget.files[0] && onFile(e.currentTarget.files[0])}
        />
        <p class="meta">{t("dropHint")}</p>
      </div>
      {preview && <img class="preview" src={preview} alt={t("previewAlt")} />}
    </>
  );
}

export function BodySite({ value, onChange, sites, label = "bodySite" }) {
  return (
    <>
      <label for="site">{t(label)}</label>
      <select id="site" value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        {sites.map((s) => (
          <option value={s}>{t(s)}</option>
        ))}
      </select>
    </>
  );
}

export function Progress({ value, label = "sending" }) {
  if (value === null) return null;
  return (
    <p>
      <label for="progress">{t(label)}</label>
      <progress id="progress" max="1" value={value} />
    </p>
  );
}
