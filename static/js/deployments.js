/* deployments pages (see static/css/deployments.css): behaviour from data attributes only. */
"use strict";
