/*
 * Wide tables on a narrow screen: each .table-wrap scrolls sideways (style.css draws a shadow
 * at the edge that has more), and one that is wider than the screen gets a line saying so, as a
 * phone shows no scroll bar until it is touched. Run again after a part of the page is replaced.
 */
(function () {
  'use strict';
  function mark() {
    document.querySelectorAll('.table-wrap').forEach(function (wrap) {
      var wide = wrap.scrollWidth > wrap.clientWidth + 1;
      wrap.toggleAttribute('data-wide', wide);
      var hint = wrap.previousElementSibling;
      var has = hint && hint.classList.contains('scroll-hint');
      if (wide && !has) {
        hint = document.createElement('p');
        hint.className = 'scroll-hint';
        hint.textContent = 'Scroll the table sideways for more columns →';
        wrap.parentNode.insertBefore(hint, wrap);
      } else if (!wide && has) {
        hint.remove();
      }
      if (!wrap.hasAttribute('tabindex')) wrap.setAttribute('tabindex', '0');
    });
  }
  window.trainhookTables = mark;
  var timer = null;
  window.addEventListener('resize', function () {
    clearTimeout(timer);
    timer = setTimeout(mark, 150);
  });
  document.addEventListener('toggle', mark, true);
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', mark);
  else mark();
})();
