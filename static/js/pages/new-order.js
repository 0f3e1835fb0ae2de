// New order: a form validated by the server (each message next to its field), sent with one
// Idempotency-Key per submission so that a double click cannot create two orders; and the
// seed's one-click generated order.

import { api, isAbort, uuid } from '../api.js';
import { rules } from '../rules.js';
import { can, roleNote } from '../session.js';
import { h, replace, pageHeader, notice, money } from '../ui.js';

/** The form's fields; the currencies, and the one chosen first, are the server's. */
const fields = () => [
  { name: 'customer_name', label: 'Customer name', type: 'text', autocomplete: 'name', maxlength: 100 },
  { name: 'customer_email', label: 'Email', type: 'email', autocomplete: 'email', maxlength: 254, inputmode: 'email' },
  { name: 'product', label: 'Product', type: 'text', maxlength: 200 },
  { name: 'quantity', label: 'Quantity', type: 'text', inputmode: 'numeric', value: '1', help: 'A whole number, 1 to 1000' },
  { name: 'amount', label: 'Order total', type: 'text', inputmode: 'decimal', help: 'A decimal such as 49.90 (dot as decimal separator)' },
  { name: 'currency', label: 'Currency', select: rules.currencies, value: rules.default_currency },
  { name: 'address', label: 'Delivery address', textarea: true, autocomplete: 'street-address', maxlength: 300 },
];

/** An option; `chosen` makes it the default, which form.reset() goes back to. */
function option(value, chosen) {
  const el = h('option', { value }, value);
  el.defaultSelected = chosen;
  return el;
}

export const newOrderPage = {
  title: 'New order',
  nav: 'new',
  mount(main, ctx) {
    if (!can('client')) {
      main.append(
        pageHeader('New order'),
        notice('info', h('p', { id: 'new-order-role' }, roleNote('Placing orders', 'client')), h('p', {}, h('a', { href: '/orders' }, 'See the orders'), '.')),
      );
      return () => {};
    }
    const specs = fields();
    const controls = {};
    const errors = {};
    const fieldEls = specs.map((f) => {
      const id = `order-${f.name}`;
      const errorId = `${id}-error`;
      const helpId = f.help ? `${id}-help` : null;
      let control;
      if (f.select)
        control = h(
          'select',
          { id, name: f.name },
          f.select.map((c) => option(c, c === f.value)),
        );
      else if (f.textarea) control = h('textarea', { id, name: f.name, rows: '2', autocomplete: f.autocomplete, maxlength: f.maxlength });
      else
        control = h('input', {
          id,
          name: f.name,
          type: f.type,
          autocomplete: f.autocomplete || 'off',
          inputmode: f.inputmode,
          maxlength: f.maxlength,
          value: f.value,
        });
      control.setAttribute('aria-describedby', [helpId, errorId].filter(Boolean).join(' '));
      controls[f.name] = control;
      errors[f.name] = h('p', { class: 'field-error', id: errorId });
      return h(
        'div',
        { class: `field field-${f.name}` },
        h('label', { for: id }, f.label),
        control,
        f.help ? h('p', { class: 'help muted small', id: helpId }, f.help) : null,
        errors[f.name],
      );
    });

    const summary = h('div', { class: 'form-summary', tabindex: '-1' });
    const result = h('div', { class: 'form-result' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'order-submit' }, 'Place order');
    const generate = h('button', { type: 'button', class: 'btn', id: 'order-generate' }, 'Create a generated order');
    // One key per submission: it changes only after an answer, so a second click while the
    // first is on its way (or a retry after a network error) reuses it.
    let key = uuid();
    let busy = false;

    const form = h(
      'form',
      { class: 'order-form card', novalidate: true, 'aria-labelledby': 'new-h' },
      h('h2', { id: 'new-h' }, 'Order details'),
      h('p', { class: 'muted small' }, 'The server checks every field; its messages show next to each one.'),
      summary,
      h('div', { class: 'form-grid' }, fieldEls),
      h('div', { class: 'actions' }, submit),
    );

    main.append(
      pageHeader(
        'New order',
        h('p', { class: 'lede' }, 'Place an order through the REST API. It goes to Kafka, comes back through the consumers, and appears in Orders live.'),
      ),
      result,
      h(
        'div',
        { class: 'grid-2 grid-form' },
        form,
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'gen-h' },
          h('h2', { id: 'gen-h' }, 'One click'),
          h('p', {}, 'As in the original demo: a generated customer, product and amount, sent by ', h('code', {}, 'POST /api/orders/create'), '.'),
          generate,
        ),
      ),
    );

    const clearErrors = () => {
      for (const name of Object.keys(errors)) {
        errors[name].textContent = '';
        controls[name].removeAttribute('aria-invalid');
      }
      summary.replaceChildren();
    };

    const showCreated = (answer) => {
      const o = answer.order || {};
      const k = answer.kafka || {};
      replace(
        result,
        notice(
          'success',
          h('strong', {}, 'Order placed. '),
          h('a', { href: `/orders/${encodeURIComponent(o.order_id)}` }, `Order ${String(o.order_id).slice(0, 8)}`),
          ` for ${o.customer_name ?? ''}, ${money(o.amount, o.currency)}`,
          h('span', { class: 'muted small block' }, `Written to ${k.topic} partition ${k.partition} at offset ${k.offset}.`),
        ),
      );
      result.querySelector('.notice').tabIndex = -1;
      result.querySelector('.notice').focus();
    };

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (busy) return;
      busy = true;
      submit.disabled = true;
      form.setAttribute('aria-busy', 'true');
      clearErrors();
      result.replaceChildren();
      const body = {};
      for (const f of specs) {
        const raw = controls[f.name].value.trim();
        if (f.name === 'quantity') {
          // Left empty, the server's default (1) applies.
          if (raw !== '') body.quantity = /^\d+$/.test(raw) ? Number(raw) : raw;
        } else {
          // The amount goes as a decimal string: exact, no binary floating point on the way.
          body[f.name] = raw;
        }
      }
      try {
        const answer = await api('/api/orders?wait=true', { method: 'POST', body, idempotencyKey: key, signal: ctx.signal });
        key = uuid();
        form.reset();
        showCreated(answer);
      } catch (error) {
        if (isAbort(error)) return;
        if (error.status === 422 && error.fields.length) {
          key = uuid();
          const items = [];
          for (const f of error.fields) {
            const name = f.field in controls ? f.field : null;
            if (name) {
              errors[name].textContent = f.message;
              controls[name].setAttribute('aria-invalid', 'true');
            }
            const label = specs.find((x) => x.name === f.field)?.label || f.field || 'Order';
            items.push(
              h(
                'li',
                {},
                name
                  ? h(
                      'a',
                      {
                        href: `#order-${name}`,
                        onClick: (ev) => {
                          ev.preventDefault();
                          controls[name].focus();
                        },
                      },
                      `${label}: ${f.message}`,
                    )
                  : `${label}: ${f.message}`,
              ),
            );
          }
          summary.replaceChildren(
            notice(
              'error',
              h('p', {}, `The order was not placed: ${items.length === 1 ? 'one field needs' : `${items.length} fields need`} attention.`),
              h('ul', {}, items),
            ),
          );
          const first = error.fields.find((f) => f.field in controls);
          (first ? controls[first.field] : summary).focus();
        } else {
          // A network error keeps the key: trying again cannot create a second order.
          if (error.status) key = uuid();
          summary.replaceChildren(notice('error', `The order was not placed: ${error.message}`));
          summary.focus();
        }
      } finally {
        busy = false;
        submit.disabled = false;
        form.removeAttribute('aria-busy');
      }
    });

    generate.addEventListener('click', async () => {
      if (generate.disabled) return;
      generate.disabled = true;
      result.replaceChildren();
      try {
        showCreated(await api('/api/orders/create?wait=true', { method: 'POST', idempotencyKey: uuid(), signal: ctx.signal }));
      } catch (error) {
        if (!isAbort(error)) replace(result, notice('error', `No order was generated: ${error.message}`));
      } finally {
        generate.disabled = false;
      }
    });

    return () => {};
  },
};
