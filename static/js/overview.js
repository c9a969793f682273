/* The overview (templates/overview.html): behaviour from data attributes only.
   The deployments part polls itself with htmx (hx-trigger="every 3s"); the widths of its bars
   are set by switchyard.js on htmx:load. Nothing else here needs a script yet. */
"use strict";
