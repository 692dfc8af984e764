// Small shared components of the satmachineadmin page, so that every view
// looks the same and a new view is short:
//
//   <dca-section title caption>   a card's header: title, caption, then the
//                                 #filters and #actions slots on the right
//   <dca-table rows columns loading rows-per-page empty-*>
//                                 a flat dense q-table with the #body slot
//                                 passed through; when there are no rows,
//                                 <dca-empty> from the empty-* props with
//                                 the #empty-actions slot, or the #empty slot
//   <dca-empty icon title text>   the empty state: an icon, a title and a
//                                 line of help, then the default slot (a
//                                 button); without icon and title, one grey
//                                 line
//   <dca-loading rows type>       skeletons while a form loads
//   <dca-refresh loading @click>  the round refresh button
//   <dca-stat label value sub>    a labelled number (dashboard, details)
//   <dca-form-actions label loading disable test>
//                                 a dialog form's Cancel and submit buttons
//   <dca-dialog v-model title caption width>
//                                 a form dialog at the top of the page: its
//                                 title, a line of help, then the default
//                                 slot (v-model and other attributes go to
//                                 the q-dialog)
//   <dca-select ...>, <dca-input ...>
//                                 a form's field: Quasar's q-select (filled,
//                                 dense, emitting values) and q-input (filled,
//                                 dense); every attribute, event and slot
//                                 goes to it
//   <dca-filter-select col v-model options label ...>
//                                 a filter: a clearable dense q-select in a
//                                 column (every other attribute goes to it)
//   <dca-filter-date col v-model label ...>
//                                 a filter: a clearable date input in a column
//   <dca-csv-btn href file tip>  the CSV export link of a view
//   <dca-leg-cells props destination>
//                                 a payment leg's type, destination, sats,
//                                 fiat and status cells (a table row's
//                                 #body props), in the settlement dialog and
//                                 the Payments tab
//   <dca-icon-btn icon tip @click ...>
//                                 a row's small round action button with its
//                                 tooltip (every other attribute goes to it)
//
// Loaded after index.js (which creates window.app) and before LNbits mounts
// the app (base.html mounts it after the extension's scripts).

;(function (app) {
  app.component('dca-empty', {
    props: {
      icon: {type: String, default: ''},
      title: {type: String, default: ''},
      text: {type: String, default: ''}
    },
    template: `
      <div
        v-if="icon || title"
        class="full-width column items-center q-pa-lg text-center"
        data-test="empty"
      >
        <q-icon v-if="icon" :name="icon" size="lg" color="grey"></q-icon>
        <div v-if="title" class="text-subtitle2 q-mt-sm" v-text="title"></div>
        <div
          v-if="text"
          class="text-caption text-grey"
          :class="$slots.default ? 'q-mb-md' : ''"
          v-text="text"
        ></div>
        <slot></slot>
      </div>
      <div
        v-else
        class="full-width text-center text-grey q-pa-md"
        data-test="empty"
      >
        <span v-text="text"></span><slot></slot>
      </div>`
  })

  // Quasar's own table words, in the page's language.
  function paginationLabel(first, last, total) {
    return SM.t('pagination', {
      first: SM.count(first),
      last: SM.count(last),
      total: SM.count(total)
    })
  }

  app.component('dca-table', {
    props: {
      rows: {type: Array, required: true},
      columns: {type: Array, required: true},
      loading: {type: Boolean, default: false},
      rowKey: {type: String, default: 'id'},
      rowsPerPage: {type: Number, default: 20},
      emptyIcon: {type: String, default: ''},
      emptyTitle: {type: String, default: ''},
      emptyText: {type: String, default: ''}
    },
    methods: {paginationLabel},
    template: `
      <q-table
        flat
        dense
        :row-key="rowKey"
        :rows="rows"
        :columns="columns"
        :loading="loading"
        :pagination="{rowsPerPage: rowsPerPage}"
        :rows-per-page-label="$t('satmachineadmin.rows_per_page')"
        :pagination-label="paginationLabel"
      >
        <template v-slot:no-data>
          <template v-if="!loading">
            <slot name="empty">
              <dca-empty
                :icon="emptyIcon"
                :title="emptyTitle"
                :text="emptyText"
              >
                <template v-if="$slots['empty-actions']" v-slot:default>
                  <slot name="empty-actions"></slot>
                </template>
              </dca-empty>
            </slot>
          </template>
        </template>
        <template v-if="$slots.body" v-slot:body="props">
          <slot name="body" v-bind="props"></slot>
        </template>
      </q-table>`
  })

  app.component('dca-section', {
    props: {
      title: {type: String, default: ''},
      caption: {type: String, default: ''},
      // The title's column: 'col' by default, 'col-12 col-md' beside filters.
      titleClass: {type: String, default: 'col'}
    },
    template: `
      <q-card-section class="row items-center q-col-gutter-sm">
        <div :class="titleClass">
          <div class="text-subtitle1"><slot name="title">{{ title }}</slot></div>
          <div v-if="caption || $slots.caption" class="text-caption text-grey">
            <slot name="caption">{{ caption }}</slot>
          </div>
        </div>
        <slot name="filters"></slot>
        <div v-if="$slots.actions" class="col-auto">
          <slot name="actions"></slot>
        </div>
      </q-card-section>`
  })

  app.component('dca-loading', {
    props: {
      rows: {type: Number, default: 2},
      type: {type: String, default: 'QInput'}
    },
    template: `
      <q-card-section data-test="loading">
        <q-skeleton
          v-for="i in rows"
          :key="i"
          :type="type"
          :class="type === 'QInput' && i < rows ? 'q-mb-sm' : ''"
        ></q-skeleton>
      </q-card-section>`
  })

  app.component('dca-refresh', {
    props: {loading: {type: Boolean, default: false}},
    emits: ['click'],
    template: `
      <q-btn
        flat
        round
        icon="refresh"
        :loading="loading"
        @click="$emit('click')"
        ><q-tooltip v-text="$t('satmachineadmin.refresh')"></q-tooltip></q-btn
      >`
  })

  app.component('dca-stat', {
    props: {
      label: {type: String, required: true},
      value: {type: String, default: '–'},
      sub: {type: String, default: ''},
      // The value's size: 'text-subtitle1' in details, 'text-h6' on cards.
      size: {type: String, default: 'text-subtitle1'},
      valueClass: {type: String, default: ''},
      // data-test of the value itself (browser tests read it).
      valueTest: {type: String, default: 'stat-value'}
    },
    template: `
      <div>
        <div class="text-caption text-grey" v-text="label"></div>
        <div :class="[size, valueClass]" v-text="value" :data-test="valueTest"></div>
        <div v-if="sub" class="text-caption text-grey" v-text="sub"></div>
        <slot></slot>
      </div>`
  })

  app.component('dca-form-actions', {
    props: {
      // The submit button's label; "Save" in the page's language without.
      label: {type: String, default: ''},
      loading: {type: Boolean, default: false},
      disable: {type: Boolean, default: false},
      // data-test of the submit button (browser tests click it).
      test: {type: String, default: null}
    },
    template: `
      <div class="row justify-end q-gutter-sm">
        <q-btn
          flat
          color="grey"
          :label="$t('satmachineadmin.cancel')"
          v-close-popup
        ></q-btn>
        <q-btn
          unelevated
          color="primary"
          type="submit"
          :label="label || $t('satmachineadmin.save')"
          :loading="loading"
          :disable="disable"
          :data-test="test"
        ></q-btn>
      </div>`
  })

  app.component('dca-dialog', {
    inheritAttrs: false,
    props: {
      title: {type: String, default: ''},
      caption: {type: String, default: ''},
      width: {type: String, default: '520px'}
    },
    template: `
      <q-dialog position="top" v-bind="$attrs">
        <q-card class="q-pa-lg" :style="{width: width, maxWidth: '95vw'}">
          <div
            class="text-h6"
            :class="caption ? '' : 'q-mb-md'"
            v-text="title"
          ></div>
          <div
            v-if="caption"
            class="text-caption text-grey q-mb-md"
            v-text="caption"
          ></div>
          <slot></slot>
        </q-card>
      </q-dialog>`
  })

  // The slots given, handed on to the Quasar field inside.
  const passSlots = `
    <template v-for="(_, name) in $slots" v-slot:[name]="scope">
      <slot :name="name" v-bind="scope || {}"></slot>
    </template>`

  app.component('dca-select', {
    template: `
      <q-select filled dense emit-value map-options>${passSlots}</q-select>`
  })

  app.component('dca-input', {
    template: `<q-input filled dense>${passSlots}</q-input>`
  })

  // Presets: the attributes given (v-model, options, label, data-test...)
  // go to the Quasar field, the column class to its wrapper.
  app.component('dca-filter-select', {
    inheritAttrs: false,
    props: {col: {type: String, default: 'col-6 col-md-2'}},
    template: `
      <div :class="col">
        <q-select
          filled
          dense
          clearable
          emit-value
          map-options
          v-bind="$attrs"
        ></q-select>
      </div>`
  })

  app.component('dca-filter-date', {
    inheritAttrs: false,
    props: {col: {type: String, default: 'col-6 col-md-2'}},
    template: `
      <div :class="col">
        <q-input
          filled
          dense
          clearable
          type="date"
          stack-label
          v-bind="$attrs"
        ></q-input>
      </div>`
  })

  app.component('dca-csv-btn', {
    props: {
      href: {type: String, required: true},
      file: {type: String, required: true},
      tip: {type: String, default: ''}
    },
    template: `
      <q-btn
        flat
        icon="download"
        :label="$t('satmachineadmin.payments_csv')"
        type="a"
        :href="href"
        :download="file"
        ><q-tooltip v-if="tip" v-text="tip"></q-tooltip
      ></q-btn>`
  })

  app.component('dca-leg-cells', {
    props: {
      props: {type: Object, required: true},
      destination: {type: String, default: ''}
    },
    data() {
      return {sm: window.SM}
    },
    computed: {
      leg() {
        return this.props.row
      }
    },
    template: `
      <q-td key="type" :props="props">
        <span v-text="sm.LEG_TYPES[leg.leg_type]"></span>
        <div
          v-if="leg.label"
          class="text-caption text-grey"
          v-text="leg.label"
        ></div>
      </q-td>
      <q-td key="destination" :props="props" v-text="destination"></q-td>
      <q-td key="sats" :props="props" v-text="sm.sats(leg.amount_sats)"></q-td>
      <q-td
        key="fiat"
        :props="props"
        v-text="leg.fiat_amount === null ? '–' : sm.fiat(leg.fiat_amount, leg.currency)"
      ></q-td>
      <q-td key="status" :props="props">
        <q-badge
          :color="sm.LEG_COLORS[leg.status]"
          v-text="sm.word(leg.status)"
        ></q-badge>
      </q-td>`
  })

  app.component('dca-icon-btn', {
    props: {tip: {type: String, default: ''}},
    template: `
      <q-btn flat dense round size="sm"
        ><q-tooltip v-if="tip" v-text="tip"></q-tooltip
      ></q-btn>`
  })
})(window.app)
