// The parts every upload form of the portal shares: a file input (offering the phone's back
// camera) inside a box a file can be dropped on, and a progress bar while the file is sent.
// Photos (photoinput.jsx: skin photos, the cadre's captures) and chest X-rays (xray.jsx) use them.
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "./strings.js";

/** A file input `id` labelled `label`, taking `accept`, in a drop box with the `hint` under it
 *  and `children` after that. `file` / `onFile` hold the choice; a null file clears the input. */
export function FileDrop({ id, label, hint, accept, file, onFile, testId, children }) {
  const [dragging, setDragging] = useState(false);
  const input = useRef(null);
  useEffect(() => {
    if (!file && input.current) input.current.value = "";
  }, [file]);
  return (
    <div
      class={`drop${dragging ? " dragging" : ""}`}
      data-testid={testId}
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
      <label for={id}>{label}</label>
      <input
        id={id}
        ref={input}
        type="file"
        accept={accept}
        capture="environment"
        onChange={(e) => e.currentTarget.files[0] && onFile(e.currentTarget.files[0])}
      />
      <p class="meta">{hint}</p>
      {children}
    </div>
  );
}

/** The progress bar of a file being sent (`value` 0–1), or nothing while none is. */
export function Progress({ value, label = "sending" }) {
  if (value === null) return null;
  return (
    <p>
      <label for="progress">{t(label)}</label>
      <progress id="progress" max="1" value={value} />
    </p>
  );
}
