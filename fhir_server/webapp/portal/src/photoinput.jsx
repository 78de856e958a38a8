// The photo picker: the shared file drop box (upload.jsx) for a JPEG or PNG photo, and a preview
// of the chosen photo. `file` / `onFile` hold the choice; a null file clears the input.
import { useEffect, useState } from "preact/hooks";
import { t } from "./strings.js";
import { FileDrop } from "./upload.jsx";

export { Progress } from "./upload.jsx";

export function PhotoInput({ file, onFile }) {
  const [preview, setPreview] = useState(null);
  useEffect(() => {
    if (!file) {
      setPreview(null);
      return undefined;
    }
    const url = URL.createObjectURL(file);
    setPreview(url);
    return () => URL.revokeObjectURL(url);
  }, [file]);
  return (
    <>
      <FileDrop
        id="photo"
        label={t("choosePhoto")}
        hint={t("dropHint")}
        accept="image/jpeg,image/png"
        file={file}
        onFile={onFile}
      />
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
