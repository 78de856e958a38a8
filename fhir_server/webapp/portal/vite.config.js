// Build of the patient portal (docs/webapp.md): `npm ci && npm run build` (or `make webapp`)
// writes dist/, which Hearth serves under /app/portal/ with the web app's strict CSP. Fixed
// file names of the served kind only (no hashes, no nested folders, no inline script or style),
// so fhir_server/webapp can serve them as a fixed set of plain names.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/app/portal/",
  define: {
    // fhirclient: the "pure" build for current browsers (no fetch polyfill from cross-fetch)
    FHIRCLIENT_PURE: "true",
  },
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "",
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2020",
    rollupOptions: {
      output: {
        entryFileNames: "portal.js",
        chunkFileNames: "portal-[name].js",
        assetFileNames: "portal[extname]",
        inlineDynamicImports: true,
      },
    },
  },
});
